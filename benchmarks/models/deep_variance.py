"""Output variance of 32-layer stacks of every layer kind, before and after ``kan.calibrate``.

    python -m benchmarks.models.deep_variance [--width 64] [--depth 32] [--seeds 3] [--batch 4096]

For each kind, ``--seeds`` stacks of ``--depth`` square layers of ``--width`` are built with their
variance-preserving init, then calibrated (LSUV, ``kan.calibrate.calibrate``) on one batch of N(0, 1)
inputs. The printed variances are measured on a *fresh* batch of N(0, 1) inputs (``EVAL_ROWS`` rows),
never the calibration batch. ``slope`` is ``d log Var[y] / d log Var[x]`` of one layer (mean of the first two
layers) at ``Var[x] = 1`` under Gaussian input (central difference, common random numbers): the stack's variance map has its fixed
point at 1 and is stable there when ``slope < 1`` (bounded features), marginal at 1 (linear or ReLU),
and unstable above 1, where finite-width errors compound with depth. Writes CSV, Markdown and a PNG of
the per-layer variance (first seed) to ``--out-dir`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from bases import BSpline, Chebyshev, Fourier, GaussianRBF, Rational, ReLUKAN
from kan import MLP, AFKANLayer, GroupKANLayer, KANLayer, SelectableKANLayer
from kan.edit.calibrate import calibrate, layer_variances

# name -> factory(width, depth, key) -> a stack (a list of layers, or a kan.MLP)
StackFactory = Callable[[int, int, jax.Array], Any]


def _layers(make: Callable[[int, int, jax.Array], Any]) -> StackFactory:
    """A stack of ``depth`` layers ``make(width, index, key)``."""
    return lambda width, depth, key: [make(width, i, k) for i, k in enumerate(jax.random.split(key, depth))]


def _kan(basis: Callable[[int], Any]) -> StackFactory:
    return _layers(lambda w, i, k: KANLayer(w, w, basis(w), key=k))


KINDS: dict[str, StackFactory] = {
    "KANLayer BSpline": _kan(BSpline),
    "KANLayer GaussianRBF": _kan(GaussianRBF),
    "KANLayer Chebyshev": _kan(Chebyshev),
    "KANLayer Fourier": _kan(Fourier),
    "KANLayer ReLUKAN": _kan(ReLUKAN),
    "KANLayer Rational": _kan(Rational),
    "GroupKANLayer swish": _layers(lambda w, i, k: GroupKANLayer(w, w, init="swish", key=k)),
    "GroupKANLayer identity": _layers(lambda w, i, k: GroupKANLayer(w, w, init="identity", key=k)),
    # KAT's block, stacked: rational (identity start) -> Linear -> rational (swish start) -> Linear
    "KAT alternation": _layers(lambda w, i, k: GroupKANLayer(w, w, init="swish" if i % 2 else "identity", key=k)),
    "AFKANLayer": _layers(lambda w, i, k: AFKANLayer(w, w, key=k)),
    "SelectableKANLayer": _layers(lambda w, i, k: SelectableKANLayer(w, w, key=k)),
    "MLP gelu": lambda w, depth, key: MLP([w] * (depth + 1), key=key),
    "MLP relu": lambda w, depth, key: MLP([w] * (depth + 1), key=key, activation=jax.nn.relu),
}

EVAL_ROWS = 16384  # fresh rows for the reported variances (deep unstable stacks are heavy-tailed)


def _steps(stack: Any) -> list[Callable[[jax.Array], jax.Array]]:
    """The stack as a list of per-layer functions (an MLP is split into its Linear layers)."""
    if isinstance(stack, MLP):
        def dense(l: int) -> Callable[[jax.Array], jax.Array]:
            w, b = stack.weights[l], stack.biases[l]
            return lambda h: _dense(w, b, h, stack.activation, l > 0)
        return [dense(l) for l in range(len(stack.weights))]
    return [lambda h, layer=layer: _apply(layer, h) for layer in stack]


_apply = eqx.filter_jit(lambda layer, x: layer(x))


@eqx.filter_jit
def _dense(w, b, h, activation, activate: bool):
    return (activation(h) if activate else h) @ w.T + b


def variance_trace(stack: Any, x: jax.Array) -> list[float]:
    """``Var`` of every layer's output (all entries pooled) on input ``x``."""
    return [v for _, v in layer_variances(stack, x)]


def layer_slope(stack: Any, width: int, key: jax.Array) -> float:
    """Mean over the first two layers of ``d log Var[y] / d log Var[x]`` at Var[x] = 1."""
    z = jax.random.normal(key, (8192, width))
    h = 0.1
    slopes = []
    for step in _steps(stack)[:2]:
        up, down = (float(jnp.var(step(z * math.exp(s * h / 2)))) for s in (1, -1))  # std x e^(+-h/2)
        slopes.append((math.log(up) - math.log(down)) / (2 * h))  # Var[x] = exp(+-h)
    if isinstance(stack, MLP):  # the first MLP layer has no activation: use its hidden layer only
        slopes = slopes[1:]
    return statistics.fmean(slopes)


def _plot(traces: dict[str, tuple[list[float], list[float]]], path: Path) -> None:
    from matplotlib.figure import Figure

    from matplotlib import colormaps

    fig = Figure(figsize=(11, 5.2))
    axes = fig.subplots(1, 2, sharey=True)
    colors = colormaps["tab20"]
    for i, (name, (before, after)) in enumerate(traces.items()):
        color = colors(i % 20)
        axes[0].plot(range(1, len(before) + 1), before, label=name, color=color)
        axes[1].plot(range(1, len(after) + 1), after, color=color)
    for ax, title in zip(axes, ("variance-preserving init", "after kan.calibrate")):
        ax.set_yscale("log")
        ax.axhspan(0.5, 2.0, color="0.9", zorder=0)
        ax.set_xlabel("layer")
        ax.set_title(title)
    axes[0].set_ylabel("output variance, fresh N(0, 1) input")
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=8, loc="lower center", ncol=5,
               bbox_to_anchor=(0.5, -0.12))
    fig.savefig(path, bbox_inches="tight", dpi=120)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4096, help="calibration batch rows")
    parser.add_argument("--only", nargs="*", default=None, help="kinds to run (default: all)")
    parser.add_argument("--out-dir", default="benchmarks/results")
    args = parser.parse_args(argv)

    w, depth = args.width, args.depth
    print(f"{depth}-layer stacks, width {w}; Var of the output on fresh N(0,1) inputs ({EVAL_ROWS} rows); "
          f"calibration batch {args.batch} rows of N(0,1); {args.seeds} seeds")
    header = f"{'kind':<24s} {'slope':>6s}  {'before (per seed)':<26s} {'after (per seed)':<26s} {'calib s':>7s}"
    print(header)
    print("-" * len(header))
    rows, traces = [], {}
    start = time.perf_counter()
    for name, factory in KINDS.items():
        if args.only and name not in args.only:
            continue
        before, after, seconds = [], [], []
        for seed in range(args.seeds):
            k_model, k_cal, k_eval = jax.random.split(jax.random.PRNGKey(seed), 3)
            stack = factory(w, depth, k_model)
            x_cal = jax.random.normal(k_cal, (args.batch, w))
            x_eval = jax.random.normal(k_eval, (EVAL_ROWS, w))
            t0 = time.perf_counter()
            calibrated = calibrate(stack, x_cal)
            seconds.append(time.perf_counter() - t0)
            trace_before, trace_after = variance_trace(stack, x_eval), variance_trace(calibrated, x_eval)
            before.append(trace_before[-1])
            after.append(trace_after[-1])
            if seed == 0:
                slope = layer_slope(stack, w, jax.random.PRNGKey(99))
                traces[name] = (trace_before, trace_after)
        rows.append({"kind": name, "width": w, "depth": depth, "slope": slope,
                     **{f"before_seed{s}": v for s, v in enumerate(before)},
                     **{f"after_seed{s}": v for s, v in enumerate(after)},
                     "calibrate_seconds": statistics.median(seconds)})
        fmt = lambda vs: " ".join(f"{v:7.3g}" for v in vs)
        print(f"{name:<24s} {slope:6.2f}  {fmt(before):<26s} {fmt(after):<26s} {statistics.median(seconds):7.2f}",
              flush=True)
    print(f"total {time.perf_counter() - start:.0f} s")

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keys = list(rows[0])
    (out / "deep_variance.csv").write_text("\n".join(
        [",".join(keys)] + [",".join(str(r[k]) for k in keys) for r in rows]) + "\n")
    md = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    md += ["| " + " | ".join(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |"
           for r in rows]
    (out / "deep_variance.md").write_text("\n".join(md) + "\n")
    _plot(traces, out / "deep_variance.png")
    return rows


if __name__ == "__main__":
    main()
