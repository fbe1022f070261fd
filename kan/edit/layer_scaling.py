"""Scaling one layer's output-producing weights by a factor: the per-kind rules :func:`kan.calibrate`
uses, and :func:`register_layer_kind` to add a kind."""

from __future__ import annotations

from typing import Any, Callable

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array

from ..layers.afkan_layer import AFKANLayer
from ..layers.group_layer import GroupKANLayer
from ..layers.layer import KANLayer
from ..layers.selectable_layer import SelectableKANLayer, SelectedKANLayer


def _times(w: Array, s: Any) -> Array:
    return w * jnp.asarray(s, w.dtype) if jnp.issubdtype(w.dtype, jnp.inexact) else w


def _scale_kan_layer(layer: KANLayer, s: Any) -> KANLayer:
    layer = eqx.tree_at(lambda l: l.spline_weight, layer, _times(layer.spline_weight, s))
    if layer.base_weight is not None:
        layer = eqx.tree_at(lambda l: l.base_weight, layer, _times(layer.base_weight, s))
    if layer.symbolic is not None:
        sym = layer.symbolic
        if not (hasattr(sym, "affine") and hasattr(sym, "active")):
            raise TypeError(f"calibrate: KANLayer.symbolic of type {type(sym).__name__} has no "
                            "(affine, active) fields to rescale")
        # c f(a x + b) + d  ->  (s c) f(a x + b) + s d, on active edges only
        factor = 1.0 + (jnp.asarray(s, sym.affine.dtype) - 1.0) * sym.active
        affine = sym.affine.at[..., 2].multiply(factor).at[..., 3].multiply(factor)
        layer = eqx.tree_at(lambda l: l.symbolic.affine, layer, affine)
    return layer


def scale_weight(layer: Any, s: Any) -> Any:
    """``layer`` with its ``weight`` field multiplied by ``s``."""
    return eqx.tree_at(lambda l: l.weight, layer, _times(layer.weight, s))


def _scale_selectable(layer: SelectableKANLayer, s: Any) -> SelectableKANLayer:
    layer = eqx.tree_at(lambda l: l.weights, layer, tuple(_times(w, s) for w in layer.weights))
    if layer.base_weight is not None:
        layer = eqx.tree_at(lambda l: l.base_weight, layer, _times(layer.base_weight, s))
    return layer


def _scale_selected(layer: SelectedKANLayer, s: Any) -> SelectedKANLayer:
    return eqx.tree_at(lambda l: l.groups, layer, tuple(_scale_kan_layer(g, s) for g in layer.groups))


SCALERS: dict[type, Callable[[Any, Any], Any]] = {
    KANLayer: _scale_kan_layer,
    GroupKANLayer: scale_weight,
    AFKANLayer: scale_weight,
    SelectableKANLayer: _scale_selectable,
    SelectedKANLayer: _scale_selected,
    eqx.nn.Linear: scale_weight,
}


def register_layer_kind(cls: type, scale: Callable[[Any, Any], Any]) -> None:
    """Let :func:`calibrate` handle layers of type ``cls`` (and subclasses).

    ``scale(layer, s)`` must return the layer with its output-producing weights multiplied by ``s``, so
    that its output is affine in ``s``: ``y(s) = s (y(1) - y(0)) + y(0)``, with ``y(0)`` what does not
    scale (biases), e.g. ``lambda l, s: eqx.tree_at(lambda m: m.weight, l, l.weight * s)``; ``s`` is a
    Python float. The layer is called on batches ``(..., in)``. If its output is not affine in ``s``,
    ``calibrate`` falls back on LSUV's iteration (``max_iters``)."""
    if not isinstance(cls, type) or not callable(scale):
        raise TypeError("register_layer_kind: need a class and a callable scale(layer, s)")
    SCALERS[cls] = scale


def scaler_for(layer: Any) -> Callable[[Any, Any], Any] | None:
    """The scaling rule registered for ``layer``'s class (or a base class), or None."""
    for cls in type(layer).__mro__:
        if cls in SCALERS:
            return SCALERS[cls]
    return None
