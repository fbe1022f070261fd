"""Start-up cost of a fresh process: the seconds each import stage adds, one subprocess per round.

    python -m benchmarks.process.startup [--rounds 5] [--alt-path DIR] [--label NAME]

Each round starts a new Python and imports, in order, :data:`STAGES` (numpy, ml_dtypes, jax,
equinox, kan, symbolic), timing each import on its own; the stage's time is what it adds after the
ones before it (ml_dtypes after numpy, and so on). Every command of the package (``python -m kan
demo``, each test subprocess) pays this before its first line of work.

``--alt-path DIR`` alternates rounds with a second contender whose ``PYTHONPATH`` starts with ``DIR``,
so another version of a package installed there (``pip install --no-deps --target DIR pkg==X``)
shadows the installed one; the table then prints both and the per-stage ratio of their medians.
This is how the ``ml_dtypes<0.7`` pin in ``pyproject.toml`` was chosen: on 2 CPU cores, importing
ml_dtypes 0.7.0 took 0.70-0.80 s, nearly all of it in numpy's ufunc loop registration
(``PyUFunc_AddLoop`` under ``perf``), against 0.006-0.014 s for 0.5.4 and 0.6.0.

The child mode (``--child``) prints one JSON line: ``{"versions": {...}, "seconds": {stage: s}}``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time

#: Modules imported in order by each round; each stage's time excludes the stages before it.
STAGES = ("numpy", "ml_dtypes", "jax", "equinox", "kan", "symbolic")


def child() -> dict:
    """Import :data:`STAGES` in order in this (fresh) process: seconds per stage and the versions."""
    seconds, versions = {}, {}
    for name in STAGES:
        start = time.perf_counter()
        module = importlib.import_module(name)
        seconds[name] = time.perf_counter() - start
        versions[name] = str(getattr(module, "__version__", "-"))
    return {"versions": versions, "seconds": seconds}


def run_child(alt_path: str | None = None) -> dict:
    """One fresh subprocess of :func:`child`; ``alt_path`` goes first on its ``PYTHONPATH``."""
    env = dict(os.environ)
    if alt_path is not None:
        if not os.path.isdir(alt_path):
            raise ValueError(f"benchmarks.process.startup: --alt-path {alt_path!r} is not a folder")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (alt_path, env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-m", "benchmarks.process.startup", "--child"], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(rounds: int, alt_path: str | None = None, label: str = "alt") -> dict[str, list[dict]]:
    """``{contender: [child result per round]}``: "installed", and ``label`` with ``alt_path``,
    alternated round by round."""
    if rounds < 1:
        raise ValueError(f"benchmarks.process.startup: rounds must be >= 1, got {rounds}")
    contenders = {"installed": None} | ({label: alt_path} if alt_path is not None else {})
    results: dict[str, list[dict]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, path in contenders.items():
            results[name].append(run_child(path))
    return results


def table(results: dict[str, list[dict]]) -> str:
    """Median seconds per stage and contender (with versions), the total, and the ratio of each other
    contender's medians to the installed one's."""
    names = list(results)
    med = {n: {s: statistics.median(r["seconds"][s] for r in results[n]) for s in STAGES} for n in names}
    head = f"{'stage':<10s}" + "".join(f"{n + ' (s)':>16s}{'version':>10s}" for n in names)
    if len(names) > 1:
        head += "".join(f"  {n + '/installed':>18s}" for n in names[1:])
    lines = [head]
    for s in STAGES + ("total",):
        row = f"{s:<10s}"
        for n in names:
            value = sum(med[n].values()) if s == "total" else med[n][s]
            version = "" if s == "total" else results[n][0]["versions"][s]
            row += f"{value:16.3f}{version:>10s}"
        for n in names[1:]:
            num = sum(med[n].values()) if s == "total" else med[n][s]
            den = sum(med[names[0]].values()) if s == "total" else med[names[0]][s]
            row += f"  {num / den:18.2f}"
        lines.append(row)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="fresh processes per contender (default 5)")
    parser.add_argument("--alt-path", default=None, help="a folder put first on a second contender's PYTHONPATH")
    parser.add_argument("--label", default="alt", help="the second contender's name (default alt)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child()))
        return
    results = measure(args.rounds, args.alt_path, args.label)
    print(f"import stages of a fresh process, median of {args.rounds} rounds (contenders alternated)")
    print(table(results))


if __name__ == "__main__":
    main()
