"""Dense B-spline features ``(..., d) -> (..., d, G + k)`` with their derivative in closed form.

Both evaluations carry a custom JVP in the input: the derivative of a B-spline of order ``k`` is

    B'_{i,k}(x) = k B_{i,k-1}(x) / (t_{i+k} - t_i) - k B_{i+1,k-1}(x) / (t_{i+k+1} - t_{i+1})

(de Boor, *A Practical Guide to Splines*, ch. X; 0/0 read as 0), so the tangent is one product with
features already at hand instead of the transpose of every recursion level. For uniform grids the same
holds piecewise: each cardinal piece is a cubic (order-``k`` polynomial) in the position inside its cell,
and its derivative is the polynomial of the differentiated coefficients divided by the knot step.
The knots are constants here (``BSpline`` stops their gradient). The tangent rule is itself built from
ordinary ops, so second derivatives (Hessians, forward-over-reverse) follow by autodiff.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .local import cardinal_pieces


def _cardinal(x: Array, grid: Array, order: int, derivative: bool):
    k = order
    num_functions = grid.shape[1] - 1 - k
    step = (grid[:, -1] - grid[:, 0]) / (grid.shape[1] - 1)
    u = (x - grid[:, 0]) / step
    # Clamp far-away inputs so floor/subtraction stay exact; they still land outside the support.
    u = jnp.clip(u, -2.0, grid.shape[1] + 1.0)
    cell = jnp.floor(u)
    t = (u - cell)[..., None]
    piece_of = cell.astype(jnp.int32)[..., None] - jnp.arange(num_functions)

    def assemble(coeffs: np.ndarray) -> Array:
        c = jnp.asarray(coeffs, x.dtype)  # (k+1 pieces, powers)
        degree = c.shape[1] - 1
        pieces = jnp.zeros(t.shape[:-1] + (k + 1,), x.dtype) + c[:, degree]
        for m in range(degree - 1, -1, -1):  # Horner in t for every piece at once
            pieces = pieces * t + c[:, m]
        # Basis i is nonzero on cells i..i+k; in cell j it equals piece (j - i).
        feats = jnp.zeros(piece_of.shape, x.dtype)
        for p in range(k + 1):
            feats = feats + jnp.where(piece_of == p, pieces[..., p : p + 1], 0.0)
        return feats

    coeffs = cardinal_pieces(k)
    feats = assemble(coeffs)
    if not derivative:
        return feats
    if k == 0:
        return feats, jnp.zeros_like(feats)
    slope = coeffs[:, 1:] * np.arange(1, k + 1)  # d/dt of each piece
    return feats, assemble(slope) / step[:, None]


def _cox_de_boor(x: Array, grid: Array, order: int, derivative: bool):
    x = x[..., None]
    feats = ((x >= grid[:, :-1]) & (x < grid[:, 1:])).astype(x.dtype)
    slope = None
    for p in range(1, order + 1):
        left_den = grid[:, p:-1] - grid[:, : -(p + 1)]
        right_den = grid[:, p + 1 :] - grid[:, 1:-p]
        safe_left = jnp.where(left_den == 0, 1.0, left_den)
        safe_right = jnp.where(right_den == 0, 1.0, right_den)
        left = (x - grid[:, : -(p + 1)]) / safe_left
        right = (grid[:, p + 1 :] - x) / safe_right
        if derivative and p == order:
            inv_left = jnp.where(left_den == 0, 0.0, p / safe_left)
            inv_right = jnp.where(right_den == 0, 0.0, p / safe_right)
            slope = inv_left * feats[..., :-1] - inv_right * feats[..., 1:]
        feats = jnp.where(left_den == 0, 0.0, left) * feats[..., :-1] + jnp.where(
            right_den == 0, 0.0, right
        ) * feats[..., 1:]
        if p < order:  # each level once: fused, XLA would recompute it for every column above it
            feats = jax.lax.optimization_barrier(feats)
    if not derivative:
        return feats
    return feats, jnp.zeros_like(feats) if slope is None else slope


def _with_closed_form_jvp(evaluate):
    @functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
    def basis_with_closed_form_derivative(x: Array, grid: Array, order: int) -> Array:
        return evaluate(x, grid, order, False)

    @basis_with_closed_form_derivative.defjvp
    def _jvp(order, primals, tangents):
        x, grid = primals
        dx, _ = tangents  # the knots are constants
        feats, slope = evaluate(x, grid, order, True)
        return feats, slope * dx[..., None]

    return basis_with_closed_form_derivative


_cardinal_features = _with_closed_form_jvp(_cardinal)
_cox_de_boor_features = _with_closed_form_jvp(_cox_de_boor)


def cardinal_features(x: Float[Array, "... d"], grid: Float[Array, "d n_knots"],
                      order: int) -> Float[Array, "... d k"]:
    """Features on uniform knots ``grid`` (closed-form cardinal pieces), ``k = n_knots - 1 - order``."""
    return _cardinal_features(x, grid, order)


def cox_de_boor_features(x: Float[Array, "... d"], grid: Float[Array, "d n_knots"],
                         order: int) -> Float[Array, "... d k"]:
    """Features on any non-decreasing knots ``grid`` (Cox-de Boor), ``k = n_knots - 1 - order``."""
    return _cox_de_boor_features(x, grid, order)


def autodiff_features(x: Float[Array, "... d"], grid: Float[Array, "d n_knots"], order: int,
                      uniform: bool) -> Float[Array, "... d k"]:
    """The same features without the custom JVP (autodiff through every recursion level or Horner step):
    the reference for tests and the "before" contender of ``benchmarks.layers``."""
    return (_cardinal if uniform else _cox_de_boor)(x, grid, order, False)
