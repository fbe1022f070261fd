"""Structural edits of layers: keep a subset of input or output nodes (used by pruning)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from bases import host_array

from ..layers.layer import KANLayer


def replace_fields(module: Any, **changes: Any) -> Any:
    """Copy of an Equinox module with some fields (static ones included) replaced."""
    names = {f.name for f in dataclasses.fields(module)}
    unknown = set(changes) - names
    if unknown:
        raise ValueError(f"replace_fields: {type(module).__name__} has no fields {sorted(unknown)}")
    new = object.__new__(type(module))
    for name in names:
        object.__setattr__(new, name, changes.get(name, getattr(module, name)))
    return new


def _select_symbolic(symbolic: Any, out_idx: np.ndarray, in_idx: np.ndarray) -> Any:
    if symbolic is None:
        return None
    if not hasattr(symbolic, "select"):
        raise TypeError(f"{type(symbolic).__name__} cannot be restricted to a subset of edges")
    return symbolic.select(out_idx, in_idx)


def _take(a: Any, idx: np.ndarray, axis: int) -> Any:
    """Entries ``idx`` of ``a`` along ``axis``, picked on the host (no XLA gather program per shape)."""
    return None if a is None else host_array(np.take(np.asarray(a), idx, axis=axis), a.dtype)


def keep_outputs(layer: KANLayer, indices: np.ndarray) -> KANLayer:
    """``layer`` with only the output nodes ``indices``."""
    idx = np.asarray(indices, dtype=int)
    return replace_fields(
        layer,
        spline_weight=_take(layer.spline_weight, idx, 0),
        base_weight=_take(layer.base_weight, idx, 0),
        bias=_take(layer.bias, idx, 0),
        edge_mask=_take(layer.edge_mask, idx, 0),
        symbolic=_select_symbolic(layer.symbolic, idx, np.arange(layer.in_features)),
        out_features=len(idx),
    )


def keep_inputs(layer: KANLayer, indices: np.ndarray) -> KANLayer:
    """``layer`` with only the input nodes ``indices`` (its basis restricted to them too)."""
    idx = np.asarray(indices, dtype=int)
    return replace_fields(
        layer,
        basis=layer.basis.select_inputs(idx),
        spline_weight=_take(layer.spline_weight, idx, 1),
        base_weight=_take(layer.base_weight, idx, 1),
        edge_mask=_take(layer.edge_mask, idx, 1),
        symbolic=_select_symbolic(layer.symbolic, np.arange(layer.out_features), idx),
        in_features=len(idx),
    )
