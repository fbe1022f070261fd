"""B-spline basis of the original KAN (Liu et al. 2024, arXiv 2404.19756).

Per input coordinate a knot vector of ``G + 2k + 1`` knots: ``G`` intervals over the grid range,
extended by ``k`` knots on each side, giving ``G + k`` B-splines of order (degree) ``k``.
Uniform grids use the closed-form cardinal B-spline (piecewise polynomials of the position inside
the knot interval, no recursion); non-uniform grids (after a grid update) use Cox-de Boor. Both carry
the closed-form derivative as a custom JVP (``bases.bspline.features``).
``kan.KANLayer`` contracts these dense features by default; with ``contraction="dense"`` / ``"local"``
it runs the local-piece edge sum (``bases.bspline.local``, ``bases.bspline.contract``) instead.
Second moments under N(0, 1) come from ``bases.bspline.moments`` (per distinct knot vector, no compile).
"""

from __future__ import annotations

from typing import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ..basis import Basis, check_last_dim
from .features import cardinal_features, cox_de_boor_features
from .moments import second_moment_traces, second_moments
from ..buffers import buffer_field, host_array


def _extend_knots(interior: np.ndarray, order: int) -> np.ndarray:
    """Append ``order`` knots on each side of ``interior`` (d, G+1), spaced by (hi - lo) / G."""
    num_intervals = interior.shape[1] - 1
    step = (interior[:, -1] - interior[:, 0]) / num_intervals
    offsets = np.arange(1, order + 1)
    left = interior[:, :1] - step[:, None] * offsets[::-1]
    right = interior[:, -1:] + step[:, None] * offsets
    return np.concatenate([left, interior, right], axis=1)


def _concrete(grid: Array) -> np.ndarray | None:
    """The knots as NumPy, or None while tracing (jit / vmap)."""
    try:
        return np.asarray(grid, np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def _validate(grid_size: int, order: int) -> None:
    if not isinstance(grid_size, (int, np.integer)) or grid_size < 1:
        raise ValueError(f"BSpline: grid_size must be an integer >= 1, got {grid_size!r}")
    if not isinstance(order, (int, np.integer)) or order < 0:
        raise ValueError(f"BSpline: order must be an integer >= 0, got {order!r}")


class BSpline(Basis):
    """B-splines of order ``order`` on ``grid_size`` intervals, one knot vector per input.

    Features: ``(..., d) -> (..., d, grid_size + order)``. Inputs outside the extended grid give
    zero features (finite for any finite input).
    """

    grid: Float[Array, "d n_knots"] = buffer_field()
    in_features: int = eqx.field(static=True)
    grid_size: int = eqx.field(static=True)
    order: int = eqx.field(static=True)
    uniform: bool = eqx.field(static=True)

    def __init__(
        self,
        in_features: int,
        grid_size: int = 5,
        order: int = 3,
        grid_range: tuple[float, float] | Sequence[Float[Array, " d"]] = (-1.0, 1.0),
        *,
        grid: Float[Array, "d n_knots"] | None = None,
        uniform: bool = True,
    ):
        _validate(grid_size, order)
        if in_features < 1:
            raise ValueError(f"BSpline: in_features must be >= 1, got {in_features}")
        self.in_features = int(in_features)
        self.grid_size = int(grid_size)
        self.order = int(order)
        if grid is None:
            lo = np.broadcast_to(np.asarray(grid_range[0], np.float64), (in_features,))
            hi = np.broadcast_to(np.asarray(grid_range[1], np.float64), (in_features,))
            if np.any(~np.isfinite(lo)) or np.any(~np.isfinite(hi)) or np.any(hi <= lo):
                raise ValueError(f"BSpline: grid_range must be finite with lo < hi, got {grid_range}")
            interior = lo[:, None] + np.linspace(0.0, 1.0, grid_size + 1)[None, :] * (hi - lo)[:, None]
            grid = _extend_knots(interior, order)
            uniform = True
        expected = (in_features, grid_size + 2 * order + 1)
        if tuple(grid.shape) != expected:
            raise ValueError(f"BSpline: grid must have shape {expected}, got {tuple(grid.shape)}")
        self.grid = host_array(grid, np.float32)
        self.uniform = bool(uniform)

    @property
    def num_functions(self) -> int:
        return self.grid_size + self.order

    def __call__(self, x: Float[Array, "... d"]) -> Float[Array, "... d k"]:
        check_last_dim(x, self.in_features, "BSpline")
        grid = jax.lax.stop_gradient(self.grid)
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        if self.uniform:
            return cardinal_features(x, grid, self.order)
        return cox_de_boor_features(x, grid, self.order)

    def gaussian_second_moment(self) -> Float[Array, "d k k"]:
        """``E[F(x) F(x)^T]`` under N(0, 1) per input, by exact-order quadrature per distinct knot vector
        (``bases.bspline.moments``: no compile, memory independent of the width)."""
        grid = _concrete(self.grid)
        if grid is None:  # inside a trace: the generic streamed quadrature
            return super().gaussian_second_moment()
        return host_array(second_moments(grid, self.order), np.float32)

    def gaussian_second_moment_trace(self) -> Float[Array, " d"]:
        """``E[sum_i F_i(x)^2]`` under N(0, 1) per input (see :meth:`gaussian_second_moment`)."""
        grid = _concrete(self.grid)
        if grid is None:
            return super().gaussian_second_moment_trace()
        return host_array(second_moment_traces(grid, self.order), np.float32)

    def domain(self) -> tuple[Float[Array, " d"], Float[Array, " d"]]:
        return self.grid[:, self.order], self.grid[:, -self.order - 1]

    def flops_per_input(self) -> int:
        k, num = self.order, self.num_functions
        if self.uniform:
            return 4 + 2 * k * (k + 1) + 2 * num * (k + 1)
        return sum(8 * (self.grid.shape[1] - 1 - p) for p in range(1, k + 1))

    # ----- grid changes (coefficients are refitted by the layer that owns the basis) ----------
    def update_grid(self, x: Float[Array, "n d"], grid_eps: float = 0.02) -> "BSpline":
        """New knots from samples ``x``: ``grid_eps * uniform + (1 - grid_eps) * quantile`` knots
        over each input's sample range (pykan's rule), extended by ``order`` knots each side."""
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[1] != self.in_features or x.shape[0] < 1:
            raise ValueError(f"BSpline.update_grid: expected samples of shape (n>=1, {self.in_features}),"
                             f" got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("BSpline.update_grid: samples contain NaN or inf")
        if not 0.0 <= grid_eps <= 1.0:
            raise ValueError(f"BSpline.update_grid: grid_eps must be in [0, 1], got {grid_eps}")
        xs = np.sort(x, axis=0)
        lo, hi = xs[0], xs[-1]
        flat = (hi - lo) < 1e-6
        lo, hi = np.where(flat, lo - 0.5, lo), np.where(flat, hi + 0.5, hi)
        positions = np.linspace(0, xs.shape[0] - 1, self.grid_size + 1).round().astype(int)
        adaptive = xs[positions].T  # (d, G+1)
        uniform_knots = lo[:, None] + np.linspace(0, 1, self.grid_size + 1)[None, :] * (hi - lo)[:, None]
        eps = np.where(flat, 1.0, grid_eps)[:, None]
        interior = eps * uniform_knots + (1 - eps) * adaptive
        return BSpline(self.in_features, self.grid_size, self.order,
                       grid=_extend_knots(interior, self.order), uniform=bool(grid_eps == 1.0))

    def with_grid_size(self, grid_size: int) -> "BSpline":
        """Grid extension: ``grid_size`` intervals placed by interpolating the current interior knots
        (a uniform grid stays uniform; a grid that is a multiple of the old one nests it exactly)."""
        _validate(grid_size, self.order)
        old = np.asarray(self.grid, np.float64)[:, self.order : self.order + self.grid_size + 1]
        pos = np.linspace(0.0, self.grid_size, grid_size + 1)
        cell = np.minimum(np.floor(pos).astype(int), self.grid_size - 1)
        frac = pos - cell
        interior = old[:, cell] * (1 - frac) + old[:, cell + 1] * frac
        return BSpline(self.in_features, grid_size, self.order,
                       grid=_extend_knots(interior, self.order), uniform=self.uniform)

    def select_inputs(self, indices: Int[Array, " m"]) -> "BSpline":
        indices = np.asarray(indices)
        return BSpline(len(indices), self.grid_size, self.order,
                       grid=np.asarray(self.grid)[indices], uniform=self.uniform)
