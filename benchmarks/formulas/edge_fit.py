"""Time of fitting every edge of a [4, 5, 5, 1] KAN against the whole symbolic library (issue goal:
under 2 s on CPU after JIT), with a baseline measured in the same run.

    python -m benchmarks.formulas.edge_fit [--repeats 5] [--points 64]

The curves are the edge functions of a freshly initialised KAN sampled on the range each input takes
on uniform data (50 edges). ``symbolic.fit_curves`` fits each to every library function as
``c*f(a*x+b)+d`` in one jitted call. The baseline is a cubic least-squares fit of the same curves with
numpy (one ``lstsq`` per curve, no search over ``a, b``); the script prints the median times and the
ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

import kan
import symbolic


def edge_curves(widths: tuple[int, ...], num_points: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(xs, ys)``, each ``(edges, num_points)``: every edge curve of a random KAN on its input range."""
    model = kan.KAN(widths, key=jax.random.PRNGKey(seed))
    x = jax.random.uniform(jax.random.PRNGKey(seed + 1), (256, widths[0]), minval=-1, maxval=1)
    xs, ys = [], []
    for layer, h in zip(model.layers, model.activations(x)[:-1]):
        h = np.asarray(h)
        pts = np.linspace(h.min(0), h.max(0), num_points)
        phi = np.asarray(layer.edge_functions(pts))
        for o in range(layer.out_features):
            for i in range(layer.in_features):
                xs.append(pts[:, i])
                ys.append(phi[:, o, i])
    return np.stack(xs), np.stack(ys)


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _cubic_fits(xs: np.ndarray, ys: np.ndarray) -> list[np.ndarray]:
    return [np.linalg.lstsq(np.vander(x, 4), y, rcond=None)[0] for x, y in zip(xs, ys)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--points", type=int, default=64)
    args = parser.parse_args(argv)
    xs, ys = edge_curves((4, 5, 5, 1), args.points)
    library = symbolic.Library()
    fits = symbolic.fit_curves(xs, ys, library)  # compile
    library_time = _median_seconds(lambda: symbolic.fit_curves(xs, ys, library), args.repeats)
    cubic_time = _median_seconds(lambda: _cubic_fits(xs, ys), args.repeats)
    print(f"[4,5,5,1]: {xs.shape[0]} edges x {len(fits.names)} functions, {args.points} points per edge")
    print(f"library fit (jitted, after compile): {library_time:.3f} s (goal < 2 s)")
    print(f"baseline cubic lstsq (numpy):        {cubic_time * 1e3:.2f} ms")
    print(f"ratio library / baseline:            {library_time / cubic_time:.0f}x")


if __name__ == "__main__":
    main()
