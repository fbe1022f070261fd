"""Symbolic edges of a KAN layer: ``phi_oi(x) = c f(a x + b) + d`` with a named library function f.

A layer holding a :class:`SymbolicEdges` masks its numeric edge ``(o, i)`` where ``active[o, i] = 1``
and adds this module's value instead (see ``kan.KANLayer``); the affine parameters keep training.

Design choice: the function names are static (a tuple of tuples of names, one per edge), not a
one-hot buffer over the whole library. A forward pass then evaluates only the few distinct functions
the layer actually uses (one ``jnp.where`` per distinct name) instead of all ~23 library functions on
every edge, and the compiled graph is exactly the formula. The price is a recompilation when an edge
is re-snapped, which happens a handful of times per workflow, never per step.
"""

from __future__ import annotations

from typing import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .basis import check_last_dim
from .buffers import buffer_field, host_array
from .symbolic_functions import get_jnp_function

IDENTITY_AFFINE = (1.0, 0.0, 1.0, 0.0)  # (a, b, c, d): c * f(a x + b) + d = f(x)


def _check_names(names: Sequence[Sequence[str]], shape: tuple[int, int]) -> tuple[tuple[str, ...], ...]:
    names = tuple(tuple(str(n) for n in row) for row in names)
    if len(names) != shape[0] or any(len(row) != shape[1] for row in names):
        raise ValueError(f"SymbolicEdges: names must be {shape[0]} rows of {shape[1]} names")
    for row in names:
        for name in row:
            get_jnp_function(name)  # raises ValueError for unknown names
    return names


class SymbolicEdges(eqx.Module):
    """Symbolic edge values ``(..., in) -> (..., out, in)``: ``c f_oi(a x_i + b) + d`` per edge.

    affine: ``(out, in, 4)`` trainable ``(a, b, c, d)``; active: ``(out, in)`` buffer, 1.0 where the
    edge is symbolic; names: static ``out x in`` function names (inactive edges hold ``"0"``).
    """

    affine: Float[Array, "out in 4"]
    active: Float[Array, "out in"] = buffer_field()
    names: tuple[tuple[str, ...], ...] = eqx.field(static=True)

    def __init__(self, names: Sequence[Sequence[str]], affine: Float[Array, "out in 4"],
                 active: Float[Array, "out in"]):
        if not isinstance(affine, jax.core.Tracer):  # checked on the host, before the transfer
            affine = np.asarray(affine, np.float32)
            if not np.all(np.isfinite(affine)):
                raise ValueError("SymbolicEdges: affine parameters contain NaN or inf")
        affine = host_array(affine, np.float32)
        active = host_array(active, np.float32)
        if affine.ndim != 3 or affine.shape[-1] != 4:
            raise ValueError(f"SymbolicEdges: affine must have shape (out, in, 4), got {affine.shape}")
        if active.shape != affine.shape[:2]:
            raise ValueError(f"SymbolicEdges: active must have shape {affine.shape[:2]}, got {active.shape}")
        self.names = _check_names(names, affine.shape[:2])
        self.affine = affine
        self.active = active

    @classmethod
    def empty(cls, out_features: int, in_features: int) -> "SymbolicEdges":
        """No symbolic edge yet: all inactive, all ``"0"``."""
        names = (("0",) * in_features,) * out_features
        affine = np.broadcast_to(np.asarray(IDENTITY_AFFINE), (out_features, in_features, 4))
        return cls(names, affine, np.zeros((out_features, in_features)))

    @property
    def shape(self) -> tuple[int, int]:
        """``(out, in)``: the edges of the layer this module belongs to."""
        return self.affine.shape[0], self.affine.shape[1]

    def __call__(self, x: Float[Array, "... in"]) -> Float[Array, "... out in"]:
        out_f, in_f = self.shape
        check_last_dim(x, in_f, "SymbolicEdges")
        a, b, c, d = (self.affine[..., j] for j in range(4))
        z = a * x[..., None, :] + b  # (..., out, in)
        names = np.array(self.names, dtype=object)
        distinct = sorted(set(names.ravel().tolist()))
        values = None
        for name in distinct:
            f_z = get_jnp_function(name).fn(z)
            if values is None:
                values = f_z
            else:
                values = jnp.where(jnp.asarray(names == name), f_z, values)
        return c * values + d

    # ----- editing -----------------------------------------------------------------------------
    def with_edge(self, out_idx: int, in_idx: int, name: str,
                  affine: Sequence[float] = IDENTITY_AFFINE, active: bool = True) -> "SymbolicEdges":
        """A copy with edge ``(out_idx, in_idx)`` set to ``c f(a x + b) + d`` (``affine = (a, b, c, d)``)."""
        out_f, in_f = self.shape
        if not (0 <= out_idx < out_f and 0 <= in_idx < in_f):
            raise ValueError(f"SymbolicEdges: edge ({out_idx}, {in_idx}) outside a {out_f}x{in_f} layer")
        get_jnp_function(name)
        names = [list(row) for row in self.names]
        names[out_idx][in_idx] = name
        new_affine = self.affine.at[out_idx, in_idx].set(jnp.asarray(affine, jnp.float32))
        new_active = self.active.at[out_idx, in_idx].set(1.0 if active else 0.0)
        return SymbolicEdges(names, new_affine, new_active)

    def select(self, out_idx: Sequence[int], in_idx: Sequence[int]) -> "SymbolicEdges":
        """The edges between output nodes ``out_idx`` and input nodes ``in_idx`` (used by pruning)."""
        out_idx = np.asarray(out_idx, dtype=int)
        in_idx = np.asarray(in_idx, dtype=int)
        names = np.array(self.names, dtype=object)[np.ix_(out_idx, in_idx)]
        pick = np.ix_(out_idx, in_idx)
        return SymbolicEdges(names.tolist(), np.asarray(self.affine)[pick], np.asarray(self.active)[pick])

    def function_name(self, out_idx: int, in_idx: int) -> str | None:
        """The function name of an active edge, None for a numeric edge."""
        return self.names[out_idx][in_idx] if float(self.active[out_idx, in_idx]) > 0 else None
