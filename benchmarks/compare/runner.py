"""Run one task: every kind, budget and seed through the protocol; rows for the CSV files."""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

from . import continual, protocol
from .tasks import Task, get_task


def run_task(task: Task | str, *, seeds: Sequence[int] = (0, 1, 2), num_trials: int = 4,
             kinds: Optional[Sequence[str]] = None, budgets: Optional[Sequence[float]] = None,
             verbose: bool = False) -> tuple[list[dict], list[dict]]:
    """``(result rows, trial rows)`` of ``task`` (a :class:`Task` or a registered name).

    Every kind gets ``num_trials`` trials per seed. A kind whose widths cannot be matched to a budget
    (:func:`kan.count.match_widths` raises) gets one row per seed with ``value`` NaN and the reason in
    ``note``: it is left out of that budget rather than run off-budget.
    """
    task = get_task(task) if isinstance(task, str) else task
    if kinds is not None or budgets is not None:
        task = dataclasses.replace(task, kinds=tuple(kinds or task.kinds), budgets=tuple(budgets or task.budgets))
    if "mlp" not in task.kinds:
        raise ValueError(f"run_task: {task.name!r} needs the 'mlp' baseline among its kinds, got {task.kinds}")
    if int(num_trials) < 1 or not seeds:
        raise ValueError("run_task: need num_trials >= 1 and at least one seed")
    seed_fn = continual.run_seed if task.problem == "continual" else protocol.run_seed
    rows, trial_rows = [], []
    for budget in task.budgets:
        for kind in task.kinds:
            for seed in seeds:
                try:
                    row, trs = seed_fn(task, kind, budget, int(seed), int(num_trials))
                except ValueError as err:
                    if "match_widths" not in str(err) and "needs in >=" not in str(err):
                        raise
                    row, trs = dict(task=task.name, kind=kind, budget=budget, budget_metric=task.budget_metric,
                                    seed=seed, metric=task.metric_name, value=math.nan, note=str(err)), []
                row.setdefault("note", "")
                rows.append(row)
                trial_rows.extend(trs)
                if verbose:
                    print(f"  {task.name} {kind:>10} budget {budget:g} seed {seed}: {row['metric']} "
                          f"{row['value']:.4g} ({row.get('widths', '-')}, {row.get('hyper', '')})", flush=True)
    return rows, trial_rows
