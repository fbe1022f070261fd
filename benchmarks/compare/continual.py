"""Class-incremental learning (continual task): the classes arrive in stages, no replay, one shared head.

For every trial the model (matched to the budget, as in :mod:`benchmarks.compare.protocol`) trains on
stage 1's classes, then stage 2's, ...; in each stage the epoch is chosen on that stage's validation
rows. After every stage the validation accuracy of every stage is recorded (``A_val[s, t]``). The trial
with the highest final average validation accuracy is chosen; only then are the chosen trial's stage
snapshots evaluated on the test split, once: final average accuracy ``mean_t A[T, t]`` (the metric) and
forgetting ``mean_{t<T} (max_{s<T} A[s, t] - A[T, t])`` (Chaudhry et al. 2018), both in [0, 1].
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from kan.count import count_flops, count_parameters

from . import protocol as P
from .tasks import Task


def _stage_rows(labels: np.ndarray, rows: np.ndarray, stages, seed: int) -> list[np.ndarray]:
    """Rows of every stage, cut to the smallest stage's count (equal shapes: one compilation)."""
    per = [rows[np.isin(labels[rows], s)] for s in stages]
    n = min(p.size for p in per)
    rng = np.random.default_rng(seed)
    return [np.sort(rng.choice(p, n, replace=False)) for p in per]


def _accuracy(model, x, y) -> float:
    return float(np.mean(np.argmax(np.asarray(model(x)), -1) == y))


def run_seed(task: Task, kind: str, budget: float, seed: int, num_trials: int) -> tuple[dict, list[dict]]:
    """The continual protocol for one (task, kind, budget, seed): a result row and the trial rows."""
    x, y, (tr, va, te), scaler, out = P.prepare(task, seed)
    stages = task.stages
    tr_s, va_s = _stage_rows(y, tr, stages, seed), _stage_rows(y, va, stages, seed + 1)
    base = dict(task=task.name, kind=kind, budget=budget, budget_metric=task.budget_metric, seed=seed)
    trial_rows, runs = [], []
    for index, hyper in enumerate(P.trials(task, kind, num_trials)):
        key = jax.random.PRNGKey(seed * 1000 + index)
        model, widths = P.matched_model(task, kind, budget, hyper, x.shape[1], out, key)
        snapshots, a_val, seconds, warm = [], [], 0.0, True
        for s, (rows_tr, rows_va) in enumerate(zip(tr_s, va_s)):
            stage_task = task
            r = P.run_trial(stage_task, kind, budget, index, hyper, (scaler.x(x[rows_tr]), scaler.y(y[rows_tr])),
                            (scaler.x(x[rows_va]), scaler.y(y[rows_va])), out, seed * 31 + s, model=model)
            model, seconds, warm = r.model, seconds + r.seconds, warm and r.warm
            snapshots.append(model)
            a_val.append([_accuracy(model, scaler.x(x[v]), y[v]) for v in va_s])
        score = float(np.mean(a_val[-1]))
        runs.append((score, index, hyper, widths, snapshots, seconds, warm))
        trial_rows.append(dict(base, trial=index, **hyper, widths="-".join(map(str, widths)),
                               params=count_parameters(model), flops=count_flops(model),
                               val_loss=-score, epoch=-1, seconds=seconds, warm=warm))
    score, index, hyper, widths, snapshots, seconds, warm = max(runs, key=lambda r: (r[0], -r[1]))
    te_s = [te[np.isin(y[te], s)] for s in stages]
    a_test = np.array([[_accuracy(m, scaler.x(x[t]), y[t]) for t in te_s] for m in snapshots])  # the test pass
    final = float(np.mean(a_test[-1]))
    forgetting = float(np.mean(np.max(a_test[:-1, :-1], axis=0) - a_test[-1, :-1]))
    epochs = task.epochs * len(stages)
    row = dict(base, metric="accuracy", value=final, forgetting=forgetting, params=count_parameters(snapshots[-1]),
               flops=count_flops(snapshots[-1]), widths="-".join(map(str, widths)), trial=index,
               hyper=";".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in hyper.items()),
               val_loss=-score, epoch=-1, sec_per_epoch=seconds / epochs if warm else math.nan)
    return row, trial_rows
