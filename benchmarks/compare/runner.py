"""Run one task: every kind, budget and seed through the protocol; rows for the CSV files."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Optional, Sequence

from kan.count import match_widths

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


def flops_variant(task: Task) -> Task:
    """The task with a FLOP budget per parameter budget: the FLOPs of the MLP matched to that budget."""
    x, y = task.load(0)
    out = y.shape[1] if task.problem == "regression" else int(y.max()) + 1
    budgets = tuple(float(match_widths("mlp", b, in_features=x.shape[1], out_features=out, depth=task.depth).flops)
                    for b in task.budgets)
    return dataclasses.replace(task, budget_metric="flops", budgets=budgets)


def run_job(args: tuple) -> tuple[list[dict], list[dict], float]:
    """One task in one process. Tasks travel by name (their loaders are closures, not picklable): in a
    worker process only tasks registered at import of :mod:`benchmarks.compare` exist."""
    name, flops, seeds, trials, kinds, verbose = args
    task = flops_variant(get_task(name)) if flops else get_task(name)
    from kan.compile_cache import enable_compile_cache

    enable_compile_cache()  # KAN_COMPILE_CACHE=off turns it off
    import jax

    jax.config.update("jax_default_prng_impl", "rbg")  # compiles ~4x faster than threefry on CPU
    start = time.perf_counter()
    kinds = [k for k in kinds if not (k == "afkan" and task.load(0)[0].shape[1] < 2)]
    if task.model_fn is not None:  # a task with its own models runs only the kinds it knows
        kinds = [k for k in kinds if k in task.kinds]
    rows, trs = run_task(task, seeds=seeds, num_trials=trials, kinds=kinds, verbose=verbose)
    return rows, trs, time.perf_counter() - start
