"""Command line: ``python -m kan demo`` (also installed as the ``kan`` console script)."""

from __future__ import annotations

import argparse
import sys


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kan", description="KAN research package")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="fit exp(sin(pi x) + y^2): train, prune, refine, retrain")
    demo.add_argument("--steps", type=_positive_int, default=50, help="L-BFGS steps per stage (>= 1; default 50)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the generated data set (default 0)")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bars (stage lines still print)")
    args = parser.parse_args(argv)
    if args.command in (None, "demo"):
        from .demo import run

        run(steps=getattr(args, "steps", 50), seed=getattr(args, "seed", 0),
            progress=not getattr(args, "no_progress", False))
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
