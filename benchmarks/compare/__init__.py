"""Fair KAN-vs-MLP comparisons: ``python -m benchmarks.compare --quick`` (see benchmarks/README.md).

Public API: :class:`Task` and :func:`register_task` (add a task), :func:`run_task` (run one task with a
given number of seeds and trials), :data:`TASKS` (the registry).
"""

from .tasks import TASKS, Task, get_task, register_task
from .runner import run_task  # noqa: E402
from . import transformer  # noqa: E402,F401  (registers digits_transformer)

__all__ = ["TASKS", "Task", "get_task", "register_task", "run_task"]
