"""Tasks of the fair comparison, and the API to add one.

A :class:`Task` says where the data comes from (``load(seed) -> (x, y)``, numpy, no download), whether it
is regression (metric RMSE in the target's units, lower is better) or classification (accuracy, higher
is better), which model kinds to compare, the budgets (parameters or FLOPs per sample) and the depth
(hidden layers). The protocol (:mod:`benchmarks.compare.protocol`) does the splitting, scaling, tuning
and testing; a task never sees the split.

    from benchmarks.compare import Task, register_task
    register_task(Task("my_sine", load=lambda seed: my_arrays(seed), problem="regression",
                       kinds=("mlp", "kan"), budgets=(500,), budget_metric="params"))
    # then: python -m benchmarks.compare --tasks my_sine   (from a script that registered it)
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np
from jaxtyping import Float

from kan.count import KINDS

PROBLEMS = ("regression", "classification", "continual")


@dataclasses.dataclass(frozen=True)
class Task:
    """One comparison. ``load(seed)`` returns ``x (n, d)`` float and ``y``: ``(n, m)`` float targets
    (regression) or ``(n,)`` int labels (classification, continual). ``budgets`` are parameter counts
    (``budget_metric="params"``) or forward FLOPs per sample (``"flops"``). ``epochs``, ``batch_size``
    and ``fractions`` (train, val, test) set the protocol; ``stages`` splits the classes into
    class-incremental stages (continual tasks only). ``model_fn(kind, budget, options, in_features,
    out_features, key) -> (model, widths)`` replaces the standard models (:data:`kan.count.KINDS`
    matched by :func:`kan.count.match_widths`) with your own; the model needs ``flops()`` for the table."""

    name: str
    load: Callable[[int], tuple[np.ndarray, np.ndarray]]
    problem: str
    kinds: tuple[str, ...] = ("mlp", "kan")
    budgets: tuple[float, ...] = (1000,)
    budget_metric: str = "params"
    depth: int = 1
    epochs: int = 50
    batch_size: int = 64
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    stages: Optional[tuple[tuple[int, ...], ...]] = None
    model_fn: Optional[Callable[..., tuple]] = None
    description: str = ""

    def __post_init__(self):
        if self.problem not in PROBLEMS:
            raise ValueError(f"Task {self.name!r}: problem must be one of {PROBLEMS}, got {self.problem!r}")
        for kind in self.kinds:
            if kind not in KINDS and self.model_fn is None:
                raise ValueError(f"Task {self.name!r}: unknown model kind {kind!r}; valid: {', '.join(KINDS)}")
        if self.budget_metric not in ("params", "flops"):
            raise ValueError(f"Task {self.name!r}: budget_metric must be 'params' or 'flops'")
        if not self.budgets or any(not b > 0 for b in self.budgets):
            raise ValueError(f"Task {self.name!r}: budgets must be positive numbers, got {self.budgets}")
        f = self.fractions
        if len(f) != 3 or any(not v > 0 for v in f) or abs(sum(f) - 1.0) > 1e-6:
            raise ValueError(f"Task {self.name!r}: fractions must be three positive numbers summing to 1, got {f}")
        if (self.problem == "continual") != (self.stages is not None):
            raise ValueError(f"Task {self.name!r}: stages are given exactly for continual tasks")

    @property
    def higher_is_better(self) -> bool:
        """Accuracy (classification, continual) is maximised, RMSE minimised."""
        return self.problem != "regression"

    @property
    def metric_name(self) -> str:
        return "rmse" if self.problem == "regression" else "accuracy"


TASKS: dict[str, Task] = {}


def register_task(task: Task, *, replace: bool = False) -> Task:
    """Add ``task`` to :data:`TASKS` (ValueError if the name is taken, unless ``replace``)."""
    if task.name in TASKS and not replace:
        raise ValueError(f"register_task: a task called {task.name!r} exists; pass replace=True")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; registered: {', '.join(TASKS)}")
    return TASKS[name]


# ----- function fitting: the KAN paper's toy functions (inputs uniform on [-1, 1]) ------------------------
def _sampled(fn: Callable[[np.ndarray], np.ndarray], lo, hi, n: int = 1500) -> Callable[[int], tuple]:
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)

    def load(seed: int) -> tuple[Float[np.ndarray, "n d"], Float[np.ndarray, "n 1"]]:
        rng = np.random.default_rng(10_000 + seed)
        x = lo + (hi - lo) * rng.random((n, lo.size))
        return x.astype(np.float32), np.asarray(fn(x), np.float64).reshape(n, 1).astype(np.float32)
    return load


def _toy(name, fn, d, budget, description):
    return Task(name, _sampled(fn, -np.ones(d), np.ones(d)), "regression", budgets=(budget,), epochs=60,
                description=description)


_PI = np.pi
for _task in (
    _toy("toy_bessel", lambda x: __import__("scipy.special", fromlist=["j0"]).j0(20 * x[:, 0]), 1, 500,
         "J0(20x)"),
    _toy("toy_exp_sin", lambda x: np.exp(np.sin(_PI * x[:, 0]) + x[:, 1] ** 2), 2, 500, "exp(sin(pi x) + y^2)"),
    _toy("toy_product", lambda x: x[:, 0] * x[:, 1], 2, 500, "x y"),
    _toy("toy_exp_mean100", lambda x: np.exp(np.mean(np.sin(_PI * x / 2) ** 2, axis=1)), 100, 20000,
         "exp(mean_i sin^2(pi x_i / 2)), 100 inputs"),
    _toy("toy_four", lambda x: np.exp((np.sin(_PI * (x[:, 0] ** 2 + x[:, 1] ** 2))
                                       + np.sin(_PI * (x[:, 2] ** 2 + x[:, 3] ** 2))) / 2), 4, 1000,
         "exp((sin(pi(x1^2+x2^2)) + sin(pi(x3^2+x4^2))) / 2)"),
):
    register_task(_task)


# ----- special functions (scipy.special), two inputs each --------------------------------------------------
def _sph(m: int, n: int) -> Callable[[np.ndarray], np.ndarray]:
    """Real part of the spherical harmonic Y_n^m(polar, azimuth) (scipy >= 1.15 has sph_harm_y;
    older versions sph_harm(m, n, azimuth, polar))."""
    import scipy.special as sp

    if hasattr(sp, "sph_harm_y"):
        return lambda x: np.real(sp.sph_harm_y(n, m, x[:, 0], x[:, 1]))
    return lambda x: np.real(sp.sph_harm(m, n, x[:, 1], x[:, 0]))


def _special_tasks() -> list[Task]:
    import scipy.special as sp

    half_pi = _PI / 2
    specs = [  # name, f(x), lo, hi
        ("ellipkinc", lambda x: sp.ellipkinc(x[:, 0], x[:, 1]), (0, 0), (half_pi, 0.9)),
        ("ellipeinc", lambda x: sp.ellipeinc(x[:, 0], x[:, 1]), (0, 0), (half_pi, 0.9)),
        *[(f"lpmv_m{m}", (lambda m: lambda x: sp.lpmv(m, x[:, 0], x[:, 1]))(m), (0, -0.95), (3, 0.95))
          for m in (0, 1, 2)],
        *[(f"sph_harm_{m}{n}", _sph(m, n), (0, 0), (_PI, 2 * _PI)) for m, n in ((0, 1), (0, 2), (1, 1))],
        ("jv", lambda x: sp.jv(x[:, 0], x[:, 1]), (0, 0), (3, 10)),
        ("yv", lambda x: sp.yv(x[:, 0], x[:, 1]), (0, 1), (3, 10)),
        ("kv", lambda x: sp.kv(x[:, 0], x[:, 1]), (0, 0.5), (3, 5)),
        ("iv", lambda x: sp.iv(x[:, 0], x[:, 1]), (0, 0), (3, 3)),
    ]
    return [Task(f"special_{name}", _sampled(fn, lo, hi), "regression", budgets=(500,), epochs=60,
                 description=f"scipy.special {name} on {lo} .. {hi}") for name, fn, lo, hi in specs]


for _task in _special_tasks():
    register_task(_task)


# ----- scikit-learn's bundled data sets (no download) -------------------------------------------------------
def _sklearn(loader_name: str, regression: bool = False) -> Callable[[int], tuple]:
    def load(seed: int) -> tuple[np.ndarray, np.ndarray]:
        del seed  # the data are fixed; the protocol draws the split from the seed
        import sklearn.datasets as ds

        data = getattr(ds, loader_name)()
        x = np.asarray(data.data, np.float32)
        y = np.asarray(data.target, np.float32).reshape(-1, 1) if regression else np.asarray(data.target, np.int32)
        return x, y
    return load


_DIGIT_STAGES = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))
for _task in (
    Task("breast_cancer", _sklearn("load_breast_cancer"), "classification", budgets=(5000,), epochs=40),
    Task("wine", _sklearn("load_wine"), "classification", budgets=(3000,), epochs=60, batch_size=32),
    Task("iris", _sklearn("load_iris"), "classification", budgets=(1000,), epochs=80, batch_size=16),
    Task("diabetes", _sklearn("load_diabetes", regression=True), "regression", budgets=(2000,), epochs=40,
         batch_size=32),
    Task("digits", _sklearn("load_digits"), "classification", budgets=(15000,), epochs=30),
    Task("digits_incremental", _sklearn("load_digits"), "continual", budgets=(15000,), epochs=10,
         stages=_DIGIT_STAGES, description="class-incremental digits, 5 stages of 2 classes, no replay"),
):
    register_task(_task)
