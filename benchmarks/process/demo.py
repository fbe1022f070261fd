"""Wall time of ``python -m kan demo``, cold and warm, one fresh process per run, contenders alternated.

    python -m benchmarks.process.demo [--cold 2] [--warm 6] [--against DIR [--against-path P]]

A cold run gets a new, empty compilation cache (``KAN_COMPILE_CACHE`` set to a fresh temporary
folder, which also holds :mod:`kan.trace_cache`'s stored programs); warm runs share one folder per
contender that an untimed run filled first. Each run's wall time is taken around the whole process
(start-up and imports included, as a user waits for them), and its output is checked for the demo's
formula (:data:`FORMULA`).

``--against DIR`` adds a second contender: the same command run in ``DIR`` (another checkout, e.g. ``git
worktree add DIR <commit>``), whose packages then shadow the installed ones (``DIR`` first on
``PYTHONPATH``; ``--against-path P`` puts ``P`` before it, e.g. a folder with another version of a
dependency from ``pip install --no-deps --target P pkg==X``). Rounds alternate the contenders, and the
table prints each one's median and range and the median of the per-round ratios against this checkout.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

#: What the demo prints when it recovers the formula.
FORMULA = "formula: exp(x_2**2 + sin(pi*x_1))"
#: The command each run starts (after the Python executable).
DEMO = ("-m", "kan", "demo", "--no-progress")
_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Contender:
    """One checkout: where its command runs (``cwd``) and what goes first on its ``PYTHONPATH``."""

    name: str
    cwd: Path
    path: tuple[str, ...] = ()
    cold: list[float] = field(default_factory=list)
    warm: list[float] = field(default_factory=list)
    recovered: list[bool] = field(default_factory=list)

    def env(self, cache: Path) -> dict[str, str]:
        env = dict(os.environ, KAN_COMPILE_CACHE=str(cache))
        env.pop("PYTHONPATH", None)
        if self.path:
            env["PYTHONPATH"] = os.pathsep.join(self.path)
        return env


def run_once(contender: Contender, cache: Path, command: tuple[str, ...], expect: str) -> tuple[float, bool]:
    """Seconds of wall time of one fresh process running ``command`` with the compilation cache in
    ``cache``, and whether its output holds ``expect``; a failing process raises, with its output."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *command], cwd=contender.cwd, env=contender.env(cache),
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{contender.name}: {' '.join(command)} exited {done.returncode}:\n"
                           f"{(done.stdout + done.stderr)[-2000:]}")
    return seconds, expect in done.stdout


def measure(contenders: list[Contender], cold: int, warm: int, command: tuple[str, ...] = DEMO,
            expect: str = FORMULA) -> list[Contender]:
    """Fills each contender's ``cold`` and ``warm`` seconds (rounds alternate the contenders) and
    ``recovered`` (one entry per timed run)."""
    if cold < 0 or warm < 0 or cold + warm == 0:
        raise ValueError(f"benchmarks.process.demo: need cold >= 0, warm >= 0 and some runs, got {cold}, {warm}")
    scratch = Path(tempfile.mkdtemp(prefix="kan-demo-bench-"))
    try:
        for r in range(cold):
            for c in contenders:
                seconds, ok = run_once(c, scratch / f"cold-{c.name}-{r}", command, expect)
                c.cold.append(seconds)
                c.recovered.append(ok)
        if warm:
            for c in contenders:  # fill each warm cache once, untimed
                run_once(c, scratch / f"warm-{c.name}", command, expect)
            for _ in range(warm):
                for c in contenders:
                    seconds, ok = run_once(c, scratch / f"warm-{c.name}", command, expect)
                    c.warm.append(seconds)
                    c.recovered.append(ok)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return contenders


def _spread(values: list[float]) -> str:
    if not values:
        return f"{'-':>22s}"
    return f"{statistics.median(values):7.2f} [{min(values):5.2f}-{max(values):5.2f}]"


def table(contenders: list[Contender]) -> str:
    """Median [min-max] seconds cold and warm per contender, the formula check, and the median of the
    per-round ratios to the first contender."""
    base = contenders[0]
    lines = [f"{'contender':<12s} {'cold s (median [range])':>24s} {'warm s (median [range])':>24s} "
             f"{'formula':>9s} {'cold x':>7s} {'warm x':>7s}"]
    for c in contenders:
        ratios = []
        for mine, theirs in ((c.cold, base.cold), (c.warm, base.warm)):
            per_round = [a / b for a, b in zip(mine, theirs)]
            ratios.append(f"{statistics.median(per_round):7.2f}" if per_round else f"{'-':>7s}")
        found = f"{sum(c.recovered)}/{len(c.recovered)}"
        lines.append(f"{c.name:<12s} {_spread(c.cold):>24s} {_spread(c.warm):>24s} {found:>9s} "
                     f"{ratios[0]} {ratios[1]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Contender]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", type=int, default=2, help="cold runs per contender (default 2)")
    parser.add_argument("--warm", type=int, default=6, help="warm runs per contender (default 6)")
    parser.add_argument("--against", default=None, help="another checkout to run the same command in")
    parser.add_argument("--against-path", default=None, help="a folder put before --against on its PYTHONPATH")
    args = parser.parse_args(argv)
    contenders = [Contender("this", _ROOT)]
    if args.against is not None:
        other = Path(args.against).resolve()
        if not (other / "kan" / "__main__.py").is_file():
            raise SystemExit(f"benchmarks.process.demo: --against {other} is not a checkout of this package")
        path = (args.against_path, str(other)) if args.against_path else (str(other),)
        contenders.append(Contender("against", other, path))
    measure(contenders, args.cold, args.warm)
    print(f"python -m kan demo: {args.cold} cold and {args.warm} warm runs per contender, fresh processes, "
          "contenders alternated")
    print(table(contenders))
    return contenders


if __name__ == "__main__":
    main()
