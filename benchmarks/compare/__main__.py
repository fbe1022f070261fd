"""``python -m benchmarks.compare [--quick | --full] [--tasks a,b] [--kinds mlp,kan] [--seeds N]
[--trials N] [--jobs N] [--out DIR]``: the fair KAN-vs-MLP comparison (protocol: benchmarks/README.md).

Writes ``runs.csv`` (one row per task, budget, kind, seed: the chosen model's test number, params,
FLOPs, widths, hyper-parameters, validation loss, epoch, wall time per epoch), ``trials.csv`` (every
trial, validation numbers only), ``results.md`` (mean +- std tables with paired comparisons) and
``pareto_<task>.png`` into ``--out`` (default ``benchmarks/results/compare``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from .report import markdown, pareto_plots, write_csv
from .runner import flops_variant, run_job
from .tasks import TASKS, get_task

PRESETS = {
    "quick": dict(tasks=("toy_exp_sin", "special_jv", "wine", "diabetes", "digits", "digits_incremental"),
                  kinds=("mlp", "kan", "spline_mlp", "grkan"), seeds=3, trials=2, flops_variant=False, jobs=1),
    "full": dict(tasks=tuple(TASKS), kinds=("mlp", "kan", "rbf", "chebyshev", "fourier", "relukan", "grkan",
                                            "afkan", "skan", "spline_mlp"),
                 seeds=5, trials=6, flops_variant=True, jobs=max(1, (os.cpu_count() or 2) // 2)),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="small preset, < 10 minutes on 2 CPU cores (default)")
    group.add_argument("--full", action="store_true", help="all tasks and kinds, 5 seeds, parallel processes")
    parser.add_argument("--tasks", help=f"comma-separated task names (registered: {', '.join(TASKS)})")
    parser.add_argument("--kinds", help="comma-separated model kinds (mlp is always included)")
    parser.add_argument("--seeds", type=int, help="number of seeds (0..N-1)")
    parser.add_argument("--trials", type=int, help="hyper-parameter trials per kind (the same for every kind)")
    parser.add_argument("--jobs", type=int, help="parallel processes (one task per process)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/compare"))
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    preset = dict(PRESETS["full" if args.full else "quick"])
    names = args.tasks.split(",") if args.tasks else list(preset["tasks"])
    tasks = [get_task(n.strip()) for n in names]
    kinds = tuple(dict.fromkeys(["mlp"] + (args.kinds.split(",") if args.kinds else list(preset["kinds"]))))
    seeds = tuple(range(args.seeds or preset["seeds"]))
    trials = args.trials or preset["trials"]
    jobs = args.jobs or preset["jobs"]
    if len(seeds) < 3:
        print("warning: fewer than 3 seeds; the paired intervals will be undefined or very wide", file=sys.stderr)
    # FLOP-matched copies of the tasks (not of tasks with their own model_fn, which match their own way)
    variants = list(tasks) + ([flops_variant(t) for t in tasks if t.model_fn is None]
                              if preset["flops_variant"] else [])
    work = [(t.name, t.budget_metric == "flops", seeds, trials, kinds, not args.quiet and jobs == 1) for t in variants]
    start = time.perf_counter()
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            results = list(pool.map(run_job, work))
    else:
        results = [run_job(w) for w in work]
    rows = [r for res in results for r in res[0]]
    trial_rows = [r for res in results for r in res[1]]
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out / "runs.csv")
    write_csv(trial_rows, args.out / "trials.csv")
    table = markdown(rows, {t.name: t for t in variants})
    wall = time.perf_counter() - start
    table += "\nWall time per task (s): " + ", ".join(
        f"{t.name}{'/flops' if t.budget_metric == 'flops' else ''} {res[2]:.0f}" for t, res in zip(variants, results))
    table += f"\n\nTotal wall time: {wall:.0f} s ({len(seeds)} seeds, {trials} trials per kind, {jobs} process(es)).\n"
    (args.out / "results.md").write_text(table)
    plots = pareto_plots(rows, {t.name: t for t in variants}, args.out)
    print(table)
    print(f"wrote {args.out / 'runs.csv'}, {args.out / 'trials.csv'}, {args.out / 'results.md'} and "
          f"{len(plots)} Pareto plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
