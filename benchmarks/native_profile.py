"""Where the B-spline layer's training step spends its time on the native CPU kernel, against an MLP layer.

    python -m benchmarks.native_profile [--in 128] [--out 128] [--batch 1024] [--grid 5] [--order 3]
                                        [--basis bspline|relukan|rbf] [--repeats 100]

Timed round-robin in one run (:func:`benchmarks.timing.time_rounds`), each part as its own jitted call:

- ``mlp step`` and ``kan step``: the full forward+backward of :mod:`benchmarks.layers` (GELU + Linear;
  ``KANLayer(..., basis, contraction="native")`` with ``BSpline(G, k)``, ``ReLUKAN(G, k)`` with fixed
  windows, or ``GaussianRBF(G, cutoff=3)``), gradients w.r.t. trainable parameters and input;
- ``terms``: the local pieces, their slopes and first columns by XLA (``bases.bspline.native_ops.terms``);
- ``forward kernel`` / ``backward kernel``: the two native calls alone, on precomputed terms;
- ``residual``: ``silu(x) @ W0.T`` forward+backward, the layer's residual branch as XLA runs it.

The parts overlap inside a step (XLA runs independent operations side by side on the two cores), so
they need not add up to the step: a part whose cost vanishes from the step is off its critical path.
Prints milliseconds and the ratio to the MLP step.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from bases import BSpline, GaussianRBF, ReLUKAN, native_build
from bases.bspline.native import rbf_kernel_args, relukan_kernel_args
from bases.bspline.native_ops import Config, backward_kernel, forward_kernel, terms
from kan import KANLayer

from .layers import _mlp_layer, grad_step
from .timing import medians, time_rounds

BASES = ("bspline", "relukan", "rbf")


def kernel_layer(kind: str, n_in: int, n_out: int, grid_size: int, order: int, key: jax.Array):
    """``(layer, cfg, grid)``: the native-path layer of basis ``kind`` and the kernels' config and grid."""
    if kind == "relukan":
        basis = ReLUKAN(n_in, grid_size, order)
        cfg, grid = relukan_kernel_args(*basis.points(), n_in, order)
    elif kind == "rbf":
        basis = GaussianRBF(n_in, grid_size, cutoff=3.0)
        cfg, grid = rbf_kernel_args(basis.centers, basis.inv_width, basis.cutoff, basis.local_terms)
    else:
        basis = BSpline(n_in, grid_size=grid_size, order=order)
        cfg, grid = Config(order, True, basis.num_functions), basis.grid
    return KANLayer(n_in, n_out, basis, contraction="native", key=key), cfg, grid



def part_calls(n_in: int, n_out: int, batch: int, grid_size: int, order: int, kind: str = "bspline") -> dict:
    """name -> zero-argument call of each timed part (compiled on first call)."""
    key = jax.random.PRNGKey(0)
    x = jax.random.uniform(key, (batch, n_in), minval=-1.0, maxval=1.0)
    kan, cfg, grid = kernel_layer(kind, n_in, n_out, grid_size, order, key)
    mlp_step, mlp_params = grad_step(_mlp_layer(n_in, n_out, key))
    kan_step, kan_params = grad_step(kan)
    weight, mask = kan.spline_weight, jnp.ones((n_out, n_in), jnp.float32)
    prepare = jax.jit(lambda v: terms(cfg, v, grid, derivatives=True))
    values, slopes, first = prepare(x)
    dy = jax.random.normal(key, (batch, n_out))
    fwd = jax.jit(lambda v, s, w: forward_kernel(cfg, v, s, w, mask))
    bwd = jax.jit(lambda v, d, s, w, g: backward_kernel(cfg, v, d, s, w, mask, g))
    residual = jax.jit(jax.grad(lambda w, v: jnp.sum((kan.base_activation(v) @ w.T) ** 2), argnums=(0, 1)))
    return {
        "mlp step": lambda: mlp_step(mlp_params, x),
        "kan step": lambda: kan_step(kan_params, x),
        "terms": lambda: prepare(x),
        "forward kernel": lambda: fwd(values, first, weight),
        "backward kernel": lambda: bwd(values, slopes, first, weight, dy),
        "residual": lambda: residual(kan.base_weight, x),
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--in", dest="n_in", type=int, default=128)
    parser.add_argument("--out", dest="n_out", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--grid", type=int, default=5)
    parser.add_argument("--order", type=int, default=3, help="B-spline / ReLU-KAN order")
    parser.add_argument("--basis", choices=BASES, default="bspline")
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args(argv)
    if not native_build.available("bspline"):
        raise SystemExit(f"the native kernel is unavailable: {native_build.unavailable_reason('bspline')}")
    times = medians(time_rounds(part_calls(args.n_in, args.n_out, args.batch, args.grid, args.order, args.basis),
                                args.repeats))
    print(f"{args.basis} {args.n_in} -> {args.n_out}, batch {args.batch}, G={args.grid}, k={args.order} "
          f"({args.repeats} interleaved rounds, medians)")
    for name, seconds in times.items():
        print(f"  {name:16s} {seconds * 1e3:8.3f} ms  {seconds / times['mlp step']:6.2f}x mlp step")
    return times


if __name__ == "__main__":
    main()
