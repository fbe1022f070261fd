"""Changing a layer's basis while keeping its edge functions: grid update and grid extension.

The new basis coefficients are a least-squares fit (float64, per input coordinate) of the new
features to the old edge functions on sample points, as in pykan's ``update_grid_from_samples``
and ``refine`` (Liu et al. 2024).
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from bases import Basis, host_array

from ..layers.layer import KANLayer
from ..layers.mult import layer_output_to_nodes


_features = eqx.filter_jit(lambda basis, x: basis(x))


def check_samples(x: Array, d: int, who: str) -> np.ndarray:
    """``x`` as float64 NumPy after checking it is ``(n >= 1, d)`` and finite (grids placed on, or
    attribution scores taken over, data with a NaN would be NaN)."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[1] != d or x.shape[0] == 0:
        raise ValueError(f"{who}: expected x of shape (n>=1, {d}), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{who}: x contains NaN or inf")
    return x


def refit_basis(layer: KANLayer, new_basis: Basis, x: Float[Array, "n in"]) -> KANLayer:
    """``layer`` with ``new_basis`` and spline weights refitted so that each edge's basis part
    matches the old one on the samples ``x`` (least squares per input coordinate)."""
    x = check_samples(x, layer.in_features, "refit_basis")
    x32 = host_array(x, np.float32)
    old_feats = np.asarray(_features(layer.basis, x32), np.float64)  # (n, d, k)
    new_feats = np.asarray(_features(new_basis, x32), np.float64)  # (n, d, k')
    weight = np.asarray(layer.spline_weight, np.float64)  # (o, d, k)
    targets = np.einsum("ndk,odk->ndo", old_feats, weight)
    new_weight = np.empty((layer.out_features, layer.in_features, new_basis.num_functions))
    for d in range(layer.in_features):
        sol, *_ = np.linalg.lstsq(new_feats[:, d, :], targets[:, d, :], rcond=None)
        new_weight[:, d, :] = sol.T
    layer = eqx.tree_at(lambda l: l.basis, layer, new_basis)
    return eqx.tree_at(lambda l: l.spline_weight, layer, host_array(new_weight, np.float32))


def update_layer_grid(layer: KANLayer, x: Float[Array, "n in"], grid_eps: float = 0.02) -> KANLayer:
    """Adapt the layer's grid to the samples ``x`` (its inputs) keeping the edge functions."""
    x = check_samples(x, layer.in_features, "update_grid")
    new_basis = layer.basis.update_grid(x, grid_eps)
    if new_basis is layer.basis:
        return layer
    return refit_basis(layer, new_basis, x)


def update_grid(model, x: Float[Array, "n in"], grid_eps: float = 0.02):
    """Update the grid of every layer of a :class:`kan.KAN` from the activations of ``x``."""
    layers = []
    h = jnp.asarray(x)
    for l, layer in enumerate(model.layers):
        new_layer = update_layer_grid(layer, h, grid_eps) if isinstance(layer, KANLayer) else layer
        layers.append(new_layer)
        if l + 1 < len(model.layers):  # the next layer's inputs (none needed after the last)
            h = layer_output_to_nodes(model, l, new_layer(h))
    return eqx.tree_at(lambda m: m.layers, model, tuple(layers))


def _dense_domain_samples(basis: Basis, per_function: int = 20) -> np.ndarray:
    lo, hi = (np.asarray(v, np.float64) for v in basis.domain())
    num = max(200, per_function * basis.num_functions)
    t = np.linspace(0.0, 1.0, num)[:, None]
    return lo[None, :] + t * (hi - lo)[None, :]


def refine(model, grid_size: int, x: Float[Array, "n in"] | None = None, grid_eps: float = 0.02):
    """Grid extension of every layer to ``grid_size`` intervals (pykan's ``refine``).

    Without ``x`` each layer keeps its grid range (knots interpolated from the old ones) and the
    coefficients are refitted on dense points of that range. With data ``x`` the new grids are placed
    on each layer's input samples, as in pykan, and the refit uses those samples, so the functions are
    kept where the data is (also for hidden inputs outside the old grid range).
    """
    layers = []
    h = None if x is None else host_array(check_samples(x, model.layers[0].in_features, "refine"),
                                          np.float32)
    for l, layer in enumerate(model.layers):
        if not hasattr(layer.basis, "with_grid_size"):
            raise TypeError(f"refine: {type(layer.basis).__name__} has no grid to extend")
        new_basis = layer.basis.with_grid_size(grid_size)
        if h is None:
            samples = _dense_domain_samples(layer.basis)
        else:
            new_basis = new_basis.update_grid(h, grid_eps)
            samples = h
        new_layer = refit_basis(layer, new_basis, samples)
        layers.append(new_layer)
        if h is not None and l + 1 < len(model.layers):
            h = layer_output_to_nodes(model, l, new_layer(h))
    return eqx.tree_at(lambda m: m.layers, model, tuple(layers))
