"""The ``--floor`` contenders of :mod:`benchmarks.layers`: for a layer, matmuls alone that carry the
multiply-adds no evaluation of its features can remove.

- :func:`dense_width`: a layer that is one dense contraction over ``K`` features per input (RBF,
  Chebyshev, Fourier, AF-pair, S-KAN while training) gets a floor over ``in * K``;
- :func:`local_width`: a B-spline or ReLU-KAN layer (the local kernels) gets one over ``in * (k + 2)``,
  its ``k + 1`` local pieces and the residual.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from bases import BSpline, ReLUKAN
from kan import KANLayer
from kan.layers.selectable_layer import SelectableKANLayer


class GemmFloor(eqx.Module):
    """The three matmuls every dense contraction over ``K`` features per input needs (forward, weight
    gradient, feature gradient) and nothing else: ``x`` broadcast to ``(batch, in * K)`` features, one
    matmul."""

    weight: jax.Array
    per_input: int = eqx.field(static=True)

    def __call__(self, x):
        feats = jnp.broadcast_to(x[..., None], x.shape + (self.per_input,)).reshape(x.shape[0], -1)
        return feats @ self.weight.T


def dense_width(layer: eqx.Module) -> int | None:
    """Features per input of a layer's one dense contraction (basis functions plus the residual), or
    None for layers that are not one dense matmul (the native B-spline kernel, GR-KAN, AF-KAN)."""
    if isinstance(layer, SelectableKANLayer):
        return sum(b.num_functions for b in layer.bases) + (layer.base_weight is not None)
    if isinstance(layer, KANLayer) and not isinstance(layer.basis, (BSpline, ReLUKAN)):
        return layer.basis.num_functions + (layer.base_weight is not None)
    return None


def local_width(layer: eqx.Module) -> int | None:
    """For a B-spline or ReLU-KAN layer (the local kernels), the multiply-adds per input and output of
    its forward as dense features: ``k + 1`` local pieces plus the residual; else None."""
    if isinstance(layer, KANLayer) and isinstance(layer.basis, (BSpline, ReLUKAN)):
        return layer.basis.order + 1 + (layer.base_weight is not None)
    return None


def floor_layers(layers: dict[str, eqx.Module], n_in: int, n_out: int) -> dict[str, GemmFloor]:
    """name -> floor contender for each layer in ``layers`` that has one (its dense floor, and for the
    local kernels the local floor; none for the "before" variants' local kernels)."""
    def floor(width: int) -> GemmFloor:
        return GemmFloor(jax.random.normal(jax.random.PRNGKey(2), (n_out, n_in * width)) * 0.01, width)

    floors = {}
    for name, layer in layers.items():
        width = dense_width(layer)
        if width is not None:
            floors[f"  floor of {name.split(' (')[0]}: GEMMs, in*{width}"] = floor(width)
        local = None if "(before" in name else local_width(layer)
        if local is not None:
            floors[f"  local floor of {name}: GEMMs, in*{local}"] = floor(local)
    return floors
