"""Command line: ``python -m kan demo`` (also installed as the ``kan`` console script)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kan", description="KAN research package")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="fit exp(sin(pi x) + y^2): train, prune, refine, retrain")
    demo.add_argument("--steps", type=int, default=50, help="L-BFGS steps per stage")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-progress", action="store_true")
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
