"""Gaussian radial basis functions on a grid (FastKAN, Li 2024, arXiv 2405.06721).

``F_i(x) = exp(-((x - c_i) / h)^2)`` with ``grid_size`` centres ``c_i`` evenly spaced over the grid
range and ``h = (hi - lo) / (grid_size - 1)`` (the grid spacing; ``hi - lo`` when there is one centre).

With a cut-off radius ``r`` (``cutoff=r``, in widths ``h``) the bumps are compact: with ``z = (x - c_i) / h``
and ``e = exp(-r^2)``, ``F_i = (exp(-z^2) - e (1 + r^2 - z^2)) / (1 - e (1 + r^2))`` for ``|z| < r`` and
0 beyond: the Gaussian less the tangent of ``exp(-s)`` at ``s = r^2`` in ``s = z^2``, so value and slope
are 0 at the radius (C1: no kink for gradients to split), rescaled to peak 1; within ``e (1 + r^2)``
(1.2e-3 at ``r = 3``, 0.09 at ``r = 2``) of the Gaussian. At most ``2 ceil(r h / spacing)`` consecutive bumps are non-zero
at any ``x`` (:func:`rbf_local_pieces`), so :class:`kan.KANLayer` can contract them on the native local
kernel (:mod:`bases.bspline.native`) like B-splines, doing that many multiply-adds per input and
output instead of ``grid_size``.
"""

from __future__ import annotations

import math
from typing import Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .basis import _QUAD_W, _QUAD_X, Basis, check_last_dim
from .buffers import buffer_field

#: Most consecutive non-zero bumps the local kernel takes (its 1 <= order <= 6).
MAX_LOCAL_TERMS = 7

_EXP_FLOPS = 4  # a transcendental counted like a sigmoid (Yu et al. 2024 cost table)


# The Gaussian quadrature of ``basis.py``, compiled once per basis configuration and size (eager
# dispatch compiles every primitive for every new shape; layer inits call these). The nodes go in as
# arguments, not constants, so XLA does not constant-fold the features of a parameter-free basis.
@eqx.filter_jit
def _quadrature(basis: Basis, xs: Array, weights: Array, outer: bool) -> Array:
    feats = basis(jnp.broadcast_to(xs[:, None], (xs.shape[0], basis.in_features)))
    values = jnp.einsum("ndk,ndl->ndkl", feats, feats) if outer else jnp.sum(feats**2, axis=-1)
    return jnp.tensordot(weights, values, axes=1)


def _compiled_trace(basis: Basis) -> Float[Array, " d"]:
    return _quadrature(basis, jnp.asarray(_QUAD_X, jnp.float32), jnp.asarray(_QUAD_W, jnp.float32), False)


def _compiled_moment(basis: Basis) -> Float[Array, "d k k"]:
    return _quadrature(basis, jnp.asarray(_QUAD_X, jnp.float32), jnp.asarray(_QUAD_W, jnp.float32), True)


def _range_arrays(grid_range, in_features: int, who: str) -> tuple[np.ndarray, np.ndarray]:
    lo = np.broadcast_to(np.asarray(grid_range[0], np.float64), (in_features,))
    hi = np.broadcast_to(np.asarray(grid_range[1], np.float64), (in_features,))
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi > lo)):
        raise ValueError(f"{who}: grid_range must be finite with lo < hi, got {grid_range}")
    return lo, hi


def _check_indices(indices, in_features: int, who: str) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"{who}.select_inputs: indices must be a non-empty 1-D integer array, got {indices!r}")
    if np.any(idx < 0) or np.any(idx >= in_features):
        raise ValueError(f"{who}.select_inputs: indices must lie in [0, {in_features}), got {idx.tolist()}")
    return idx


class GaussianRBF(Basis):
    """``grid_size`` Gaussian bumps per input: ``(..., d) -> (..., d, grid_size)``.

    Centres and width are buffers (not trained), one set per input coordinate. ``cutoff`` (a radius in
    widths, default none) makes the bumps compact (see the module docstring); ``local_terms`` is then
    the most consecutive non-zero bumps at any ``x`` (``None`` without a cut-off or with one centre).
    """

    centers: Float[Array, "d k"] = buffer_field()
    inv_width: Float[Array, " d"] = buffer_field()
    in_features: int = eqx.field(static=True)
    grid_size: int = eqx.field(static=True)
    cutoff: Optional[float] = eqx.field(static=True, default=None)
    local_terms: Optional[int] = eqx.field(static=True, default=None)

    def __init__(
        self,
        in_features: int,
        grid_size: int = 8,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        *,
        width: float | None = None,
        cutoff: float | None = None,
    ):
        if not isinstance(grid_size, (int, np.integer)) or grid_size < 1:
            raise ValueError(f"GaussianRBF: grid_size must be an integer >= 1, got {grid_size!r}")
        if in_features < 1:
            raise ValueError(f"GaussianRBF: in_features must be >= 1, got {in_features}")
        lo, hi = _range_arrays(grid_range, in_features, "GaussianRBF")
        if width is None:
            h = (hi - lo) / max(grid_size - 1, 1)
        else:
            if not np.isfinite(width) or width <= 0:
                raise ValueError(f"GaussianRBF: width must be a finite number > 0, got {width!r}")
            h = np.full((in_features,), float(width))
        self.in_features = int(in_features)
        self.grid_size = int(grid_size)
        t = np.linspace(0.0, 1.0, grid_size) if grid_size > 1 else np.array([0.5])
        self.centers = jnp.asarray(lo[:, None] + t[None, :] * (hi - lo)[:, None], jnp.float32)
        self.inv_width = jnp.asarray(1.0 / h, jnp.float32)
        if cutoff is not None:
            if isinstance(cutoff, bool) or not (isinstance(cutoff, (int, float, np.floating)) and
                                                math.isfinite(cutoff) and cutoff > 0):
                raise ValueError(f"GaussianRBF: cutoff must be a finite number > 0 (widths), got {cutoff!r}")
            self.cutoff = float(cutoff)
            if grid_size > 1:  # 2 ceil(R): R, the radius in centre spacings, to 1e-6 (bumps there < 1e-9)
                spacing = (hi - lo) / (grid_size - 1)
                self.local_terms = 2 * int(np.max(np.ceil(self.cutoff * h / spacing - 1e-6)))

    @property
    def num_functions(self) -> int:
        return self.grid_size

    def __call__(self, x: Float[Array, "... d"]) -> Float[Array, "... d k"]:
        check_last_dim(x, self.in_features, "GaussianRBF")
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        centers = jax.lax.stop_gradient(self.centers).astype(x.dtype)
        inv_width = jax.lax.stop_gradient(self.inv_width).astype(x.dtype)
        z = (x[..., None] - centers) * inv_width[:, None]
        return _bump(z, self.cutoff)

    def gaussian_second_moment_trace(self) -> Float[Array, " d"]:
        return _compiled_trace(self)

    def gaussian_second_moment(self) -> Float[Array, "d k k"]:
        return _compiled_moment(self)

    def domain(self) -> tuple[Float[Array, " d"], Float[Array, " d"]]:
        if self.grid_size == 1:
            half = 0.5 / self.inv_width
            return self.centers[:, 0] - half, self.centers[:, 0] + half
        return self.centers[:, 0], self.centers[:, -1]

    def flops_per_input(self) -> int:
        # per bump: subtract, scale, square, negate, exp
        return self.grid_size * (4 + _EXP_FLOPS)

    def select_inputs(self, indices: Int[Array, " m"]) -> "GaussianRBF":
        idx = _check_indices(indices, self.in_features, "GaussianRBF")
        fresh = eqx.tree_at(lambda b: (b.centers, b.inv_width), GaussianRBF(int(idx.size), self.grid_size),
                            (self.centers[idx], self.inv_width[idx]))
        object.__setattr__(fresh, "cutoff", self.cutoff)  # static fields, kept as they are
        object.__setattr__(fresh, "local_terms", self.local_terms)
        return fresh


def _bump(z: Array, cutoff: Optional[float]) -> Array:
    """The Gaussian ``exp(-z^2)``, or with a cut-off ``r`` its compact C1 form: ``exp(-z^2) - e (1 + r^2 -
    z^2)`` with ``e = exp(-r^2)`` (zero with zero slope at ``|z| = r``), rescaled to peak 1, and 0 beyond."""
    if cutoff is None:
        return jnp.exp(-z * z)
    floor = math.exp(-cutoff * cutoff)
    zz = z * z
    inside = jnp.exp(-zz) - floor * ((1.0 + cutoff * cutoff) - zz)
    # NaN stays NaN (a NaN input must not read as "beyond the radius")
    return jnp.where(zz >= cutoff * cutoff, 0.0, inside) * (1.0 / (1.0 - floor * (1.0 + cutoff * cutoff)))


def rbf_local_pieces(
    x: Float[Array, "rows d"], first_center: Float[Array, " d"], spacing: Float[Array, " d"],
    inv_width: Float[Array, " d"], cutoff: float, terms: int,
) -> tuple[list[Float[Array, "rows d"]], Int[Array, "rows d"]]:
    """``(pieces, first)`` of a cut-off :class:`GaussianRBF` with evenly spaced centres
    ``first_center + i spacing`` (``terms`` even, ``terms / 2`` spacings at least the cut-off radius):
    ``pieces[q]`` is bump ``first + q`` at ``x``, ``first = floor(u) - terms / 2 + 1`` for ``u`` the
    position in spacings (indices outside ``[0, grid_size)`` are not bumps). Like the B-spline pieces,
    the pieces are functions of ``t = u - floor(u)`` alone, so they agree with ``first`` however XLA
    fuses the two."""
    reach = terms // 2
    u = jnp.clip((x - first_center) / spacing, -2.0 * terms, 2.0**22)  # far away: no bumps, floor exact
    cell = jnp.floor(u)
    t = u - cell
    scale = spacing * inv_width
    pieces = [_bump((t + (reach - 1 - q)) * scale, cutoff) for q in range(terms)]
    return pieces, cell.astype(jnp.int32) - (reach - 1)
