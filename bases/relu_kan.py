"""ReLU-KAN basis (Qiu et al. 2024, arXiv 2406.02075) and the phase grid it shares with AF-KAN.

Phase grid over ``[lo, hi]`` with ``G`` intervals and order ``k``: ``s_i = lo + (hi - lo) i / G`` for
``i = -k..G-1`` and ``e_i = s_i + (hi - lo)(k + 1) / G``, i.e. ``G + k`` windows (the paper's grid is
``[lo, hi] = [0, 1]``). ReLU-KAN features are the normalised bumps

    R_i(x) = [ReLU(e_i - x) ReLU(x - s_i)]^2 * 16 / (e_i - s_i)^4,

which peak at 1 in the middle of their window. The start/end points are buffers by default and
trainable parameters with ``trainable=True``; ``shared=True`` uses one set for every input (as AF-KAN's
published code does) instead of one set per input coordinate.

Like a B-spline of order ``k``, a point in grid cell ``c`` (``lo + h c <= x < lo + h (c + 1)``, ``h =
(hi - lo) / G``) lies inside only the windows ``j = c .. c + k`` (feature index ``j = i + k``):
:func:`relukan_local_pieces` evaluates just those ``k + 1``, which is what lets a KAN layer run ReLU-KAN
on the local CPU kernel of :mod:`bases.bspline.native` (fixed windows only).
"""

from __future__ import annotations

from typing import Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .basis import Basis, check_last_dim
from .buffers import buffer_field
from .rbf import _check_indices, _compiled_moment, _compiled_trace, _range_arrays

_MIN_WIDTH = 1e-4  # trained windows are kept at least this wide so the normalisation stays finite


def phase_grid(grid_size: int, order: int, grid_range, rows: int, who: str) -> tuple[np.ndarray, np.ndarray]:
    """Start and end points ``(rows, grid_size + order)`` of the phase grid described above."""
    if not isinstance(grid_size, (int, np.integer)) or grid_size < 1:
        raise ValueError(f"{who}: grid_size must be an integer >= 1, got {grid_size!r}")
    if not isinstance(order, (int, np.integer)) or order < 0:
        raise ValueError(f"{who}: order must be an integer >= 0, got {order!r}")
    lo, hi = _range_arrays(grid_range, rows, who)
    i = np.arange(-order, grid_size)
    start = lo[:, None] + (hi - lo)[:, None] * i[None, :] / grid_size
    end = start + (hi - lo)[:, None] * (order + 1) / grid_size
    return start, end


class PhaseBasis(Basis):
    """Shared machinery of bases built on the phase grid: storage of the (optionally trainable,
    optionally shared) start/end points, ``domain`` and ``select_inputs``."""

    start: Optional[Float[Array, "p k"]]
    end: Optional[Float[Array, "p k"]]
    start_fixed: Optional[Float[Array, "p k"]] = buffer_field()
    end_fixed: Optional[Float[Array, "p k"]] = buffer_field()
    in_features: int = eqx.field(static=True)
    grid_size: int = eqx.field(static=True)
    order: int = eqx.field(static=True)

    def _set_points(self, in_features, grid_size, order, grid_range, trainable, shared, who) -> None:
        if in_features < 1:
            raise ValueError(f"{who}: in_features must be >= 1, got {in_features}")
        start, end = phase_grid(grid_size, order, grid_range, 1 if shared else in_features, who)
        start, end = jnp.asarray(start, jnp.float32), jnp.asarray(end, jnp.float32)
        self.in_features, self.grid_size, self.order = int(in_features), int(grid_size), int(order)
        if trainable:
            self.start, self.end, self.start_fixed, self.end_fixed = start, end, None, None
        else:
            self.start, self.end, self.start_fixed, self.end_fixed = None, None, start, end

    @property
    def num_functions(self) -> int:
        return self.grid_size + self.order

    @property
    def trainable(self) -> bool:
        return self.start is not None

    @property
    def shared(self) -> bool:
        return self.points()[0].shape[0] == 1 and self.in_features > 1

    def points(self) -> tuple[Float[Array, "p k"], Float[Array, "p k"]]:
        """Start and end points, ``p = 1`` when shared across inputs, else ``p = d``."""
        if self.start is not None:
            return self.start, self.end
        return jax.lax.stop_gradient(self.start_fixed), jax.lax.stop_gradient(self.end_fixed)

    def _inputs(self, x: Array, who: str) -> tuple[Array, Array, Array]:
        check_last_dim(x, self.in_features, who)
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        start, end = self.points()
        return x[..., None], start.astype(x.dtype), end.astype(x.dtype)

    def gaussian_second_moment_trace(self) -> Float[Array, " d"]:
        return _compiled_trace(self)

    def gaussian_second_moment(self) -> Float[Array, "d k k"]:
        return _compiled_moment(self)

    def domain(self) -> tuple[Float[Array, " d"], Float[Array, " d"]]:
        start, end = self.points()
        shape = (self.in_features,)
        return (jnp.broadcast_to(start[:, self.order], shape),
                jnp.broadcast_to(end[:, self.grid_size - 1], shape))

    def _fresh(self, in_features: int) -> "PhaseBasis":
        """A basis of the same configuration on ``in_features`` inputs (arrays replaced afterwards)."""
        raise NotImplementedError

    def select_inputs(self, indices: Int[Array, " m"]) -> "PhaseBasis":
        idx = _check_indices(indices, self.in_features, type(self).__name__)
        per_input = self.points()[0].shape[0] == self.in_features and not self.shared
        fresh = self._fresh(int(idx.size))
        arrays = (self.start, self.end, self.start_fixed, self.end_fixed)
        arrays = tuple(None if a is None else (a[idx] if per_input else a) for a in arrays)
        return eqx.tree_at(lambda b: (b.start, b.end, b.start_fixed, b.end_fixed), fresh, arrays,
                           is_leaf=lambda a: a is None)


def relukan_local_pieces(
    x: Float[Array, "rows d"], start: Float[Array, "p n"], end: Float[Array, "p n"], order: int
) -> tuple[list[Float[Array, "rows d"]], Int[Array, "rows d"]]:
    """``(pieces, first)``: ``pieces[q]`` is feature ``first + q`` of :class:`ReLUKAN` at ``x``, q = 0..order;
    indices outside ``[0, n)`` are not features. ``start``/``end`` must be a phase grid (:func:`phase_grid`,
    the only windows a fixed :class:`ReLUKAN` has; ``p`` is 1 (shared) or ``d``): with ``h`` its spacing,
    ``lo`` the start of window ``k`` and ``x = lo + h (c + t)``, window ``c + q`` gives
    ``x - s = h (t + k - q)`` and ``e - x = h (1 + q - t)``, so the feature is the polynomial
    ``(4 (t + k - q) (1 + q - t) / (k + 1)^2)^2`` (equal to the dense bump up to rounding)."""
    k, n = order, start.shape[1]
    step = (end[:, 0] - start[:, 0]) / (k + 1)
    u = (x - start[:, k]) / step
    cell = jnp.clip(jnp.floor(u), -k - 1, n)  # far-away points land on a cell without features
    t = u - cell
    scale = 4.0 / (k + 1) ** 2
    pieces = []
    for q in range(k + 1):
        bump = (t + (k - q)) * ((1 + q) - t) * scale
        pieces.append(bump * bump)
    return pieces, cell.astype(jnp.int32)


class ReLUKAN(PhaseBasis):
    """ReLU-KAN bumps ``(..., d) -> (..., d, grid_size + order)`` (see the module docstring)."""

    def __init__(
        self,
        in_features: int,
        grid_size: int = 5,
        order: int = 3,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        *,
        trainable: bool = False,
        shared: bool = False,
    ):
        self._set_points(in_features, grid_size, order, grid_range, trainable, shared, "ReLUKAN")

    def __call__(self, x: Float[Array, "... d"]) -> Float[Array, "... d k"]:
        x, start, end = self._inputs(x, "ReLUKAN")
        width = jnp.maximum(end - start, _MIN_WIDTH)
        bump = jax.nn.relu(end - x) * jax.nn.relu(x - start) * (4.0 / width**2)
        return bump * bump

    def _fresh(self, in_features: int) -> "ReLUKAN":
        return ReLUKAN(in_features, self.grid_size, self.order, trainable=self.trainable,
                       shared=self.shared)

    def flops_per_input(self) -> int:
        # per window: two differences, two ReLUs, product, scale, square
        return 7 * self.num_functions
