"""``python -m benchmarks.formulas.feynman --auto``: every law through ``symbolic.discover`` with only (x, y).

No shape, seed or setting is chosen per law: each gets 1000 samples on its ranges, ``discover(x, y,
time_budget=B)`` (default 60 s) in a fresh process, and the truth is used only to score the chosen
formula (exact: ``sympy.simplify(recovered - truth) == 0`` after a numeric check, as in the hand-shaped
mode). Times are wall seconds of the ``discover`` call in that process, once with the compilation cache
off (cold) and once with a cache shared by all laws and warmed by one law beforehand (warm).
With ``--noise 0.01``, Gaussian noise of standard deviation 0.01 * RMS(y) is added to y (the SRBench
convention); ``discover`` is not told the noise level.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import sympy as sp

from .feynman import Equation, _symbols, is_exact, make_data


# a law in neither set that takes the structure route: it fills the cache with the surrogate's programs
WARM_UP = Equation("warm-up", "x3*cos(x1 - x2) + x1", {"x1": (-1, 1), "x2": (-1, 1), "x3": (0.5, 2)}, ())


def write_auto(rows: Sequence[dict], out: Path, name: str) -> str:
    """``<name>.csv`` and ``<name>.md`` in ``out``; returns the Markdown table."""
    import csv

    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    secs = [r["seconds"] for r in rows if np.isfinite(r["seconds"])]
    lines = ["| law | truth | recovered | exact | test RMSE | s | route |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['equation']} | `{r['truth']}` | `{r['recovered']}` | {'yes' if r['exact'] else 'no'} "
                     f"| {r['formula_rmse']:.1e} | {r['seconds']:.1f} | {r['edges']} |")
    lines.append(f"\nExact: {sum(r['exact'] for r in rows)}/{len(rows)} "
                 f"({100 * np.mean([r['exact'] for r in rows]):.0f}%); median {np.median(secs):.1f} s, "
                 f"max {np.max(secs):.1f} s per law")
    text = "\n".join(lines) + "\n"
    (out / f"{name}.md").write_text(text)
    return text


def run_auto(eq: Equation, budget: float, noise: float, cache: str, seed: int = 0) -> dict:
    """One law through ``discover`` in this process; returns a result row."""
    os.environ["KAN_COMPILE_CACHE"] = cache
    from symbolic import discover

    syms = _symbols(eq)
    truth = sp.sympify(eq.expr, locals={s.name: s for s in syms})
    x, y = make_data(eq, 1000, seed)
    if noise > 0:
        rng = np.random.default_rng(1000 + seed)
        y = y + noise * float(np.sqrt(np.mean(y.astype(np.float64) ** 2))) * rng.standard_normal(y.shape)
    test = make_data(eq, 500, seed + 2)
    start = time.perf_counter()
    result = discover(x, y, time_budget=budget, seed=seed, variables=[s.name for s in syms])
    seconds = time.perf_counter() - start
    by_name = {s.name: s for s in syms}
    expr = result.expr.xreplace({v: by_name[v.name] for v in result.variables})
    test_rmse = float(np.sqrt(np.mean((result.predict(test[0]) - test[1][:, 0]) ** 2)))
    return {"equation": eq.name, "truth": str(truth), "recovered": str(expr),
            "exact": bool(is_exact(expr, truth, test[0][:200], syms)), "formula_rmse": test_rmse,
            "network_rmse": float("nan"), "edges": result.best.source, "widths": "auto", "seconds": seconds}


def _isolated(eq: Equation, budget: float, noise: float, cache: str, timeout: float) -> dict:
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        future = pool.submit(run_auto, eq, budget, noise, cache)
        try:
            return future.result(timeout=timeout)
        except Exception as err:  # a timeout or a dead worker counts as not recovered
            for proc in pool._processes.values():
                proc.kill()
            return {"equation": eq.name, "truth": eq.expr, "recovered": f"error: {type(err).__name__}: {err}",
                    "exact": False, "formula_rmse": float("nan"), "network_rmse": float("nan"), "edges": "",
                    "widths": "auto", "seconds": float("nan")}


def run_all(equations: Sequence[Equation], budget: float, noise: float, out: Path, modes: Sequence[str],
            jobs: int = 1) -> dict[str, list[dict]]:
    """Each law in a fresh process per mode (``cold``: cache off; ``warm``: shared cache in ``out``,
    warmed first by the law that needs the structure route, run once untimed)."""
    cache_dir = out / "jax_cache"
    rows: dict[str, list[dict]] = {}
    for mode in modes:
        cache = "off" if mode == "cold" else str(cache_dir)
        if mode == "warm":
            _isolated(WARM_UP, budget, noise, cache, 4 * budget + 120)
        with concurrent.futures.ThreadPoolExecutor(jobs) as threads:
            futures = {threads.submit(_isolated, eq, budget, noise, cache, 4 * budget + 120): eq for eq in equations}
            done = {}
            for future in concurrent.futures.as_completed(futures):
                row = future.result()
                done[row["equation"]] = row
                print(f"[{mode}] {row['equation']:<10s} exact={row['exact']!s:<5s} {row['seconds']:5.1f}s  "
                      f"{row['recovered']}", flush=True)
        rows[mode] = [done[eq.name] for eq in equations]
    return rows
