"""Forward+backward time of one layer of each kind against an MLP layer, in the same run.

    python -m benchmarks.layers [--in 128] [--out 128] [--batch 1024] [--repeats 50]

The baseline is an MLP layer of the same in/out sizes (GELU then Linear). Every layer is timed as
``jax.jit(jax.grad(sum(layer(x)**2)))`` over layer parameters and input; the script prints the median
time, the ratio to the MLP layer, analytic FLOPs and parameter counts, and writes CSV + Markdown to
``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from bases import ActivationPair, BSpline, Chebyshev, Fourier, GaussianRBF, ReLUKAN, count_parameters
from kan import KANLayer, MLP
from kan.layers.afkan_layer import AFKANLayer
from kan.layers.selectable_layer import SelectableKANLayer

LayerFactory = Callable[[int, int, jax.Array], eqx.Module]


def _bspline_layer(n_in: int, n_out: int, key: jax.Array) -> eqx.Module:
    return KANLayer(n_in, n_out, BSpline(n_in, grid_size=5, order=3), key=key)


def _mlp_layer(n_in: int, n_out: int, key: jax.Array) -> eqx.Module:
    return _MLPLayer(n_in, n_out, key)


class _MLPLayer(eqx.Module):
    """GELU followed by Linear: the MLP counterpart of one KAN layer (activation, then weights)."""

    mlp: MLP

    def __init__(self, n_in: int, n_out: int, key: jax.Array):
        self.mlp = MLP([n_in, n_out], key=key)

    def __call__(self, x):
        return self.mlp(jax.nn.gelu(x))


def _gr_kan_layer(n_in: int, n_out: int, key: jax.Array) -> eqx.Module:
    from kan import GroupKANLayer

    return GroupKANLayer(n_in, n_out, init="swish", key=key)


#: name -> factory(in_features, out_features, key); other layer kinds register themselves here.
LAYERS: dict[str, LayerFactory] = {
    "mlp (gelu+linear)": _mlp_layer,
    "kan b-spline G=5 k=3": _bspline_layer,
    "gr-kan": _gr_kan_layer,
}


# Issue 5: more bases in the KAN edge sum, AF-KAN and S-KAN.
LAYERS.update({
    "kan rbf G=8": lambda i, o, k: KANLayer(i, o, GaussianRBF(i, 8), key=k),
    "kan chebyshev deg=5": lambda i, o, k: KANLayer(i, o, Chebyshev(i, 5), key=k),
    "kan fourier G=5": lambda i, o, k: KANLayer(i, o, Fourier(i, 5), key=k),
    "kan relu-kan G=5 k=3": lambda i, o, k: KANLayer(i, o, ReLUKAN(i, 5, 3), key=k),
    "kan af-pair silu/quad1 G=3 k=3": lambda i, o, k: KANLayer(i, o, ActivationPair(i, 3, 3), key=k),
    "af-kan global_attn G=3 k=3": lambda i, o, k: AFKANLayer(i, o, 3, 3, key=k),
    "s-kan cheb/fourier/rbf (training)": lambda i, o, k: SelectableKANLayer(
        i, o, ["chebyshev", "fourier", "rbf"], key=k),
})


def time_fwd_bwd(layer: eqx.Module, x: jax.Array, repeats: int) -> float:
    """Median seconds of one jitted forward+backward pass (gradients w.r.t. parameters and input)."""
    grad = eqx.filter_jit(eqx.filter_grad(lambda model, inp: jnp.sum(model(inp) ** 2)))
    jax.block_until_ready(grad(layer, x))  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(grad(layer, x))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _flops(layer: eqx.Module) -> str:
    fn = getattr(layer, "flops", None)
    return str(fn()) if callable(fn) else "-"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in", dest="n_in", type=int, default=128)
    parser.add_argument("--out", dest="n_out", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--only", nargs="*", default=None, help="layer names to run (default: all)")
    parser.add_argument("--out-dir", default="benchmarks/results")
    args = parser.parse_args(argv)

    x = jax.random.normal(jax.random.PRNGKey(1), (args.batch, args.n_in))
    rows = []
    baseline = None
    print(f"device: {jax.devices()[0].device_kind}; shape {args.batch}x{args.n_in} -> {args.n_out}")
    for name, factory in LAYERS.items():
        if args.only and name not in args.only and not name.startswith("mlp"):
            continue
        layer = factory(args.n_in, args.n_out, jax.random.PRNGKey(0))
        seconds = time_fwd_bwd(layer, x, args.repeats)
        baseline = seconds if baseline is None else baseline
        rows.append({"layer": name, "ms": seconds * 1e3, "ratio_vs_mlp": seconds / baseline,
                     "params": count_parameters(layer), "flops_per_sample": _flops(layer)})
        print(f"{name:<32s} {seconds * 1e3:8.3f} ms   x{seconds / baseline:6.2f} vs MLP   "
              f"params {rows[-1]['params']:>8d}   flops/sample {rows[-1]['flops_per_sample']}")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    header = list(rows[0])
    (out / "layers.csv").write_text("\n".join([",".join(header)] + [
        ",".join(str(r[h]) for h in header) for r in rows]) + "\n")
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(f"{r[h]:.3f}" if isinstance(r[h], float) else str(r[h]) for h in header) + " |"
           for r in rows]
    (out / "layers.md").write_text("\n".join(md) + "\n")
    return rows


if __name__ == "__main__":
    main()
