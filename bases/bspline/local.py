"""Local B-spline evaluation: only the ``k + 1`` functions that are non-zero at each point.

A B-spline of order ``k`` on knots ``g`` has, at a point ``x`` in knot interval ``j`` (``g_j <= x <
g_{j+1}``), exactly ``k + 1`` possibly non-zero functions: indices ``j - k .. j``. These helpers return
those values with the index of the first one, ``start = j - k``:

    values[..., d, q] = F_{start + q}(x_d),  q = 0..k

Indices outside ``[0, G + k)`` (points near or beyond the ends of the extended grid) are not basis
functions; :func:`dense_from_local` drops them and :func:`valid_mask` marks them. Semantics follow the
dense reference in ``bases.bspline`` exactly: uniform grids use the closed-form cardinal pieces with the
same clipping, non-uniform grids the Cox-de Boor recursion with the same zero-denominator rule; a point
on a knot belongs to the interval on its right; points outside the extended grid get no functions.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int


def cardinal_pieces(order: int) -> np.ndarray:
    """Coefficients ``C[p, m]`` with ``N(p + t) = sum_m C[p, m] t^m`` for t in [0, 1), where N is the
    cardinal B-spline of degree ``order`` supported on [0, order + 1] (truncated-power expansion)."""
    k = order
    coeffs = np.zeros((k + 1, k + 1))
    for p in range(k + 1):
        for j in range(p + 1):
            sign_binom = (-1) ** j * math.comb(k + 1, j) / math.factorial(k)
            shift = p - j  # (t + shift)^k = sum_m C(k, m) shift^(k-m) t^m
            for m in range(k + 1):
                coeffs[p, m] += sign_binom * math.comb(k, m) * shift ** (k - m)
    return coeffs


def _uniform_pieces(x: Array, grid: Array, order: int) -> tuple[list[Array], Array]:
    k = order
    step = (grid[:, -1] - grid[:, 0]) / (grid.shape[1] - 1)
    u = (x - grid[:, 0]) / step
    # Clamp far-away inputs so floor/subtraction stay exact; they still land outside the support.
    u = jnp.clip(u, -2.0, grid.shape[1] + 1.0)
    cell = jnp.floor(u)
    t = u - cell
    coeffs = cardinal_pieces(k).astype(np.float32)  # (k+1 pieces, k+1 powers)
    pieces = []
    for p in range(k + 1):  # Horner in t, one piece at a time (elementwise in x's layout)
        acc = jnp.full_like(t, coeffs[p, k])
        for m in range(k - 1, -1, -1):
            acc = acc * t + coeffs[p, m]
        pieces.append(acc)
    # Function i is non-zero on cells i..i+k and equals piece (cell - i) there: q = k - piece.
    return pieces[::-1], cell.astype(jnp.int32) - k


def _knot_interval(x: Array, grid: Array) -> Array:
    """``j`` with ``g_j <= x < g_{j+1}`` (the last such j for repeated knots); -1 left of the grid,
    ``n_knots - 1`` at or right of its last knot (and -1 for NaN)."""
    j = jnp.full(x.shape, -1, jnp.int32)
    for m in range(grid.shape[1]):
        j = j + (x >= grid[:, m]).astype(jnp.int32)
    return j


def _cox_de_boor_pieces(x: Array, grid: Array, order: int) -> tuple[list[Array], Array]:
    k, n = order, grid.shape[1]
    j = _knot_interval(x, grid)
    flat_grid = grid.reshape(-1)
    row = jnp.arange(grid.shape[0], dtype=jnp.int32) * n

    # Knots g_{j-k} .. g_{j+k+1} in one gather; clipped ones only feed functions dropped later.
    offsets = jnp.arange(-k, k + 2, dtype=jnp.int32)
    picked = jnp.take(flat_grid, row[:, None] + jnp.clip(j[..., None] + offsets, 0, n - 1))
    knots = {r: picked[..., r + k] for r in range(-k, k + 2)}
    vals = [jnp.ones_like(x)]  # degree 0: N_{j,0} = 1 on interval j
    for p in range(1, k + 1):
        # vals holds N_{j-p+1 .. j, p-1}; N_{j-p, p-1} = N_{j+1, p-1} = 0 pad both ends.
        prev = [jnp.zeros_like(x)] + vals + [jnp.zeros_like(x)]
        new = []
        for s in range(p + 1):  # function i = j + r, r = s - p
            r = s - p
            left_den = knots[r + p] - knots[r]
            right_den = knots[r + p + 1] - knots[r + 1]
            left = (x - knots[r]) / jnp.where(left_den == 0, 1.0, left_den)
            right = (knots[r + p + 1] - x) / jnp.where(right_den == 0, 1.0, right_den)
            new.append(jnp.where(left_den == 0, 0.0, left) * prev[s]
                       + jnp.where(right_den == 0, 0.0, right) * prev[s + 1])
        vals = new
    return vals, j - k


def local_pieces(
    x: Float[Array, "... d"], grid: Float[Array, "d n_knots"], order: int, uniform: bool
) -> tuple[list[Float[Array, "... d"]], Int[Array, "... d"]]:
    """``(pieces, start)``: ``pieces[q]`` (shape of ``x``) is function ``start + q``, q = 0..order.
    Every operation is elementwise in ``x``'s layout (no small trailing axis), which XLA vectorises."""
    if uniform:
        return _uniform_pieces(x, grid, order)
    return _cox_de_boor_pieces(x, grid, order)


def local_values(
    x: Float[Array, "... d"], grid: Float[Array, "d n_knots"], order: int, uniform: bool
) -> tuple[Float[Array, "... d k1"], Int[Array, "... d"]]:
    """``(values, start)``: the ``order + 1`` functions that can be non-zero at each point and the index
    of the first. ``values[..., q]`` belongs to function ``start + q``; entries whose index falls outside
    ``[0, grid_size + order)`` are not functions (see :func:`valid_mask`)."""
    pieces, start = local_pieces(x, grid, order, uniform)
    return jnp.stack(pieces, axis=-1), start


def local_pieces_and_derivatives(
    x: Float[Array, "... d"], grid: Float[Array, "d n_knots"], order: int, uniform: bool
) -> tuple[list[Array], list[Array], Int[Array, "... d"]]:
    """``(pieces, d pieces / dx, start)``, derivatives exactly as autodiff of the dense reference gives
    them (zero where the reference clips or compares)."""
    def fn(v):
        return local_pieces(v, grid, order, uniform)

    (pieces, start), (dpieces, _) = jax.jvp(fn, (x,), (jnp.ones_like(x),))
    return pieces, dpieces, start


def valid_mask(start: Int[Array, "... d"], order: int, num_functions: int) -> Array:
    """``(..., d, order + 1)`` booleans: which local entries are basis functions."""
    index = start[..., None] + jnp.arange(order + 1)
    return (index >= 0) & (index < num_functions)


def dense_from_local(
    values: Float[Array, "... d k1"], start: Int[Array, "... d"], num_functions: int, offset: int = 0
) -> Float[Array, "... d n"]:
    """Scatter local values into dense features ``(..., d, num_functions + offset)``: column
    ``offset + start + q`` gets ``values[..., q]`` (out-of-range entries are dropped). ``offset`` leaves
    that many leading columns zero (room for the layer's residual feature)."""
    width = num_functions + offset
    cols = jnp.arange(width)
    rel = jnp.where(cols >= offset, cols - offset - start[..., None], -1)  # q of each column, if 0..k
    out = jnp.zeros((), values.dtype)
    for q in range(values.shape[-1] - 1, -1, -1):
        out = jnp.where(rel == q, values[..., q : q + 1], out)
    return out

def dense_rows(
    pieces: list[Float[Array, "c d"]], start: Int[Array, "c d"], num_functions: int, offset: int = 0,
    lead: Float[Array, "c d"] | None = None,
) -> Float[Array, "c n d"]:
    """Dense features in function-major layout ``(c, num_functions + offset, d)`` (``d`` stays the
    fast axis, so the scatter vectorises and the result is a plain matmul operand once flattened).
    ``lead`` (with ``offset=1``) fills column 0 (the layer's residual feature)."""
    width = num_functions + offset
    cols = jnp.arange(width, dtype=jnp.int32)[:, None]
    rel = jnp.where(cols >= offset, cols - offset - start[:, None, :], -1)  # (c, width, d)
    # One nested select (a single XLA loop fusion), not a sum of k + 1 masked terms.
    out = jnp.zeros((), pieces[0].dtype)
    for q in range(len(pieces) - 1, -1, -1):
        out = jnp.where(rel == q, pieces[q][:, None, :], out)
    if lead is not None:
        out = jnp.where(cols == 0, lead[:, None, :], out)
    return out
