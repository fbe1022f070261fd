"""Does S-KAN pick the planted family? Selection counts of the paper's softmax rule and the refit rule.

    python -m benchmarks.models.skan_selection [--seeds 5] [--samples 512] [--noise 0.01] [--out DIR]

Each problem is an additive function of 3 inputs, ``y = g1(x1) + g2(x2) + g3(x3) + noise``, with the
inputs uniform on ``[-2, 2]``, ``[0, 10]`` and ``[-5, 3]``. Every node gets one planted 1-D function
from a family, its parameters drawn at random per seed (kink, coefficients, frequency, centre, width):

* kinked: ``a |x - k|`` or ``a relu(x - k)``, ``k`` anywhere in the middle 60% of the range -> ``linear_spline``;
* polynomial: a random quadratic or cubic -> ``polynomial``;
* periodic: ``a sin(w x + phi)``, 1.5 to 4 periods across the range -> ``fourier``;
* saturating: ``a tanh((x - c) / s)``, ``s`` 5% to 20% of the range -> ``chebyshev`` (ChebyKAN, tanh map);
* compact bump: ``a exp(-((x - c) / w)^2)``, ``w`` 5% to 12% of the range -> ``rbf``.

Per seed the five problems rotate the families over the three nodes, so every family meets every
input range: 3 planted nodes per family and seed. All seven candidate spaces of ``kan.CANDIDATES`` but
``rational`` are offered by name, with their default settings (grids on ``(-1, 1)``; cubic B-splines
and ReLU-KAN bumps are generic competitors). ``noise`` is Gaussian with ``noise * std(y)``.

Criteria: "old" is the paper's annealed softmax on the spaces as given (today's behaviour before the
fix: ``criterion="softmax", adapt=False``); "softmax+adapt" the same with the range adaptation; "new"
the default (``criterion="refit"``: range adaptation, shape search, held-out choice on a 25%
validation split of the training rows). The truth is used only to score: a node counts as a hit
when it picked its family's space. Test error: MSE of the finalised layer on 2048 fresh samples over
the variance of ``y`` (median over the problems).
"""

from __future__ import annotations

import argparse
import csv
import time
from collections import Counter
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from kan.layers.selectable_layer import SelectableKANLayer, fit_selectable

RANGES = [(-2.0, 2.0), (0.0, 10.0), (-5.0, 3.0)]
FAMILIES = ["kinked", "polynomial", "periodic", "saturating", "bump"]
INTENDED = {"kinked": "linear_spline", "polynomial": "polynomial", "periodic": "fourier",
            "saturating": "chebyshev", "bump": "rbf"}
SPACES = ("bspline", "rbf", "fourier", "chebyshev", "relu_kan", "linear_spline", "polynomial")
CRITERIA = {
    "old": dict(criterion="softmax", adapt=False),
    "softmax+adapt": dict(criterion="softmax", adapt=True),
    "new": dict(),
}


def planted(family: str, lo: float, hi: float, rng: np.random.Generator):
    """A random function ``g(x)`` of ``family`` on ``[lo, hi]`` (numpy in, numpy out)."""
    span, mid = hi - lo, (lo + hi) / 2
    amp = rng.choice([-1.0, 1.0]) * rng.uniform(0.7, 1.5)
    inner = lambda a, b: lo + span * rng.uniform(a, b)
    if family == "kinked":
        k = inner(0.2, 0.8)
        if rng.random() < 0.5:
            return lambda x: amp * np.abs(x - k) / span * 4
        return lambda x: amp * np.maximum(x - k, 0.0) / span * 4
    if family == "polynomial":
        coef = rng.normal(size=int(rng.integers(3, 5)))
        coef[-1] = np.sign(coef[-1]) * max(abs(coef[-1]), 0.5)
        return lambda x: np.polynomial.polynomial.polyval((x - mid) / (span / 2), coef)
    if family == "periodic":
        w, phi = 2 * np.pi * rng.uniform(1.5, 4.0) / span, rng.uniform(0, 2 * np.pi)
        return lambda x: amp * np.sin(w * x + phi)
    if family == "saturating":
        c, s = inner(0.25, 0.75), span * rng.uniform(0.05, 0.2)
        return lambda x: amp * np.tanh((x - c) / s)
    c, w = inner(0.2, 0.8), span * rng.uniform(0.05, 0.12)
    return lambda x: amp * np.exp(-(((x - c) / w) ** 2))


def problem(seed: int, index: int, samples: int, noise: float):
    """``(families, train (x, y), test (x, y), key)`` of problem ``index`` of ``seed``."""
    rng = np.random.default_rng(1000 * seed + index)
    families = [FAMILIES[(index + node) % len(FAMILIES)] for node in range(3)]
    funcs = [planted(f, lo, hi, rng) for f, (lo, hi) in zip(families, RANGES)]

    def draw(n):
        x = np.stack([rng.uniform(lo, hi, n) for lo, hi in RANGES], axis=1)
        return x, sum(g(x[:, j]) for j, g in enumerate(funcs))[:, None]

    (x, y), (xt, yt) = draw(samples), draw(2048)
    y = y + noise * y.std() * rng.normal(size=y.shape)
    key = jax.random.PRNGKey(1000 * seed + index)
    as32 = lambda a: jnp.asarray(a, jnp.float32)
    return families, (as32(x), as32(y)), (as32(xt), as32(yt)), key


_apply = eqx.filter_jit(lambda model, x: model(x))


def run(seeds: int, samples: int, noise: float, steps: int, criteria=tuple(CRITERIA)) -> list[dict]:
    rows = []
    for seed in range(seeds):
        for index in range(len(FAMILIES)):
            families, (x, y), (xt, yt), key = problem(seed, index, samples, noise)
            for name in criteria:
                options = CRITERIA[name]
                start = time.perf_counter()
                layer = SelectableKANLayer(3, 1, SPACES, key=key)
                extra = dict(steps=steps, learning_rate=0.05) if options.get("criterion") == "softmax" else {}
                layer, _ = fit_selectable(layer, (x, y), **options, **extra)
                picks = layer.selection().names
                test = float(jnp.mean((_apply(layer.finalize(), xt) - yt) ** 2) / jnp.var(yt))
                seconds = time.perf_counter() - start
                for node, family in enumerate(families):
                    rows.append(dict(criterion=name, seed=seed, problem=index, node=node, family=family,
                                     intended=INTENDED[family], picked=picks[node],
                                     hit=picks[node] == INTENDED[family], test_error=test, seconds=seconds))
    return rows


def table(rows: list[dict], seeds: int, criteria=tuple(CRITERIA)) -> str:
    """Markdown: per criterion, family x seed hits (of 3), total, and what was picked instead."""
    lines = []
    for name in criteria:
        mine = [r for r in rows if r["criterion"] == name]
        header = ["family (intended)"] + [f"seed {s}" for s in range(seeds)] + ["total", "picked instead"]
        lines += [f"criterion: {name}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for family in FAMILIES:
            cells = [f"{family} ({INTENDED[family]})"]
            for s in range(seeds):
                hits = [r["hit"] for r in mine if r["family"] == family and r["seed"] == s]
                cells.append(f"{sum(hits)}/{len(hits)}")
            fam = [r for r in mine if r["family"] == family]
            wrong = Counter(r["picked"] for r in fam if not r["hit"])
            cells += [f"{sum(r['hit'] for r in fam)}/{len(fam)}",
                      ", ".join(f"{k} x{v}" for k, v in wrong.most_common()) or "-"]
            lines.append("| " + " | ".join(cells) + " |")
        hits = sum(r["hit"] for r in mine)
        tests = [r["test_error"] for r in mine if r["node"] == 0]
        secs = sum(r["seconds"] for r in mine if r["node"] == 0)
        lines += ["", f"{name}: {hits}/{len(mine)} nodes picked the planted family; median test MSE / Var(y) "
                  f"{np.median(tests):.2e}; {secs:.0f} s for {len(tests)} fits", ""]
    return "\n".join(lines)


def figure(rows: list[dict], criteria=tuple(CRITERIA)):
    """Bar chart: fraction of planted nodes that picked their family, per family and criterion."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.2))
    ax = fig.add_subplot()
    width = 0.8 / len(criteria)
    for i, name in enumerate(criteria):
        rates = [np.mean([r["hit"] for r in rows if r["criterion"] == name and r["family"] == f]) for f in FAMILIES]
        ax.bar(np.arange(len(FAMILIES)) + i * width, rates, width, label=name)
    ax.set_xticks(np.arange(len(FAMILIES)) + 0.4 - width / 2, FAMILIES)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("picked the planted family")
    ax.legend(fontsize=8)
    return fig


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--noise", type=float, default=0.01, help="noise std as a fraction of std(y)")
    parser.add_argument("--steps", type=int, default=300, help="Adam steps of the softmax criteria")
    parser.add_argument("--criteria", nargs="+", default=list(CRITERIA), choices=list(CRITERIA))
    parser.add_argument("--out", type=Path, default=None, help="directory for skan_selection.csv / .md / .png")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = run(args.seeds, args.samples, args.noise, args.steps, tuple(args.criteria))
    text = table(rows, args.seeds, tuple(args.criteria))
    print(text)
    print(f"total {time.perf_counter() - start:.0f} s ({args.seeds} seeds, {args.samples} samples, "
          f"noise {args.noise}, softmax steps {args.steps})")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        with open(args.out / "skan_selection.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        (args.out / "skan_selection.md").write_text(text + "\n")
        figure(rows, tuple(args.criteria)).savefig(args.out / "skan_selection.png", bbox_inches="tight")
    return rows


if __name__ == "__main__":
    main()
