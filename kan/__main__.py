"""Command line: ``python -m kan demo`` and ``python -m kan discover data.csv --target y`` (also installed
as the ``kan`` console script). Both turn on JAX's persistent compilation cache (``kan.compile_cache``;
``KAN_COMPILE_CACHE=off`` turns it off), so a second run of the same command starts warm. ``demo`` also
picks XLA:CPU's older loop emitters for its small programs (``bases.xla_cpu.configure_small_programs``;
``KAN_XLA_CPU_DEFAULTS=1`` keeps XLA's defaults). A command that finishes leaves at once
(:func:`leave`): output flushed, then ``os._exit``, without the interpreter's teardown of JAX's runtime
and compiled programs (0.5-0.8 s of nothing after the demo's last line, 10% of a warm run)."""

from __future__ import annotations

import argparse
import os
import sys


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def _add_discover(sub) -> None:
    cmd = sub.add_parser("discover", help="find a formula y = f(x) in a CSV file (header row, numeric cells)")
    cmd.add_argument("csv", help="the CSV file: a header row of column names, then one row per sample")
    cmd.add_argument("--target", required=True, help="the column to explain (several: comma-separated)")
    cmd.add_argument("--inputs", default=None, help="comma-separated input columns (default: all others)")
    cmd.add_argument("--time-budget", type=_positive_float, default=60.0, help="seconds per target (default 60)")
    cmd.add_argument("--noise", type=float, default=None, help="standard deviation of the target's noise, if known")
    cmd.add_argument("--seed", type=int, default=0, help="seed of the train/validation/test split (default 0)")
    cmd.add_argument("--out", default=None, help="PNG to write (default: <csv stem>_formula.png beside the CSV)")


def _run_discover(args) -> int:
    from pathlib import Path

    from symbolic import discover
    from symbolic.discovery.report import plot_result
    from symbolic.discovery.table import read_csv

    from .compile_cache import enable_compile_cache

    enable_compile_cache()
    try:
        x, y, inputs, targets = read_csv(args.csv, args.target,
                                         None if args.inputs is None else args.inputs.split(","))
    except (OSError, ValueError) as err:
        print(f"kan discover: {err}", file=sys.stderr)
        return 2
    results = discover(x, y, time_budget=args.time_budget * len(targets), seed=args.seed, variables=inputs,
                       noise=args.noise)
    results = results if isinstance(results, list) else [results]
    stem = Path(args.csv).with_suffix("")
    for k, (name, result) in enumerate(zip(targets, results)):
        print(f"\n{name}: Pareto front (validation RMSE; test RMSE reported, not used to choose)")
        print(result.table())
        print(f"chosen: {name} = {result.expr}    ({result.seconds:.1f} s: "
              + ", ".join(f"{s} {t:.1f} s" for s, t in result.stages.items()) + ")")
        out = args.out if args.out and len(targets) == 1 else f"{stem}_{name}_formula.png"
        for path in plot_result(result, x, y[:, k], out, target=name):
            print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kan", description="KAN research package")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="fit exp(sin(pi x) + y^2): train, prune, refine, retrain")
    demo.add_argument("--steps", type=_positive_int, default=50, help="L-BFGS steps per stage (>= 1; default 50)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the generated data set (default 0)")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bars (stage lines still print)")
    _add_discover(sub)
    args = parser.parse_args(argv)
    if args.command == "discover":
        return _run_discover(args)
    if args.command in (None, "demo"):
        from bases.xla_cpu import configure_small_programs

        configure_small_programs()  # before the demo's first program: see bases.xla_cpu
        from .demo import run

        run(steps=getattr(args, "steps", 50), seed=getattr(args, "seed", 0),
            progress=not getattr(args, "no_progress", False))
        return 0
    parser.print_help()
    return 2


def leave(code: int) -> None:
    """End the process with ``code`` once a command has finished: flush stdout and stderr, wait for
    JAX's pending effects, then ``os._exit`` (no atexit handlers, no teardown of JAX's runtime: every
    file a command writes is closed by then, and the persistent compilation cache is written when a
    program compiles)."""
    jax = sys.modules.get("jax")  # a command that never imported JAX has nothing to wait for
    if jax is not None:
        try:
            jax.effects_barrier()
        except Exception:  # noqa: BLE001 - leaving anyway; a failed barrier has nothing left to wait for
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be shown
            pass
    os._exit(code)


def cli() -> None:
    """The ``kan`` console script: :func:`main`, then :func:`leave`."""
    leave(main())


if __name__ == "__main__":
    cli()
