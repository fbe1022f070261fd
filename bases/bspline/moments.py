"""Second moments of B-splines under x ~ N(0, 1), computed per distinct knot vector in float64 NumPy.

``E[F_i(x) F_l(x)]`` is an integral of a piecewise polynomial times the Gaussian density. Each knot
interval (clipped to [-9, 9], where the Gaussian mass outside is below 1e-18) is cut into pieces no wider
than 0.25 and integrated by 8-point Gauss-Legendre: exact for the spline product (degree <= 2k <= 14),
and the Gaussian factor is resolved to float64 rounding. Work and memory scale with the number of
*distinct* knot vectors (one for a fresh uniform layer, however wide), never with a batch of quadrature
points times the layer width, and nothing is compiled.
"""

from __future__ import annotations

import numpy as np

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(8)
_MAX_PIECE = 0.25
_CUT = 9.0


def _features(knots: np.ndarray, x: np.ndarray, order: int) -> np.ndarray:
    """Cox-de Boor in float64: ``(m,) -> (m, n_knots - order - 1)`` (the dense reference's rule)."""
    x = x[:, None]
    feats = ((x >= knots[:-1]) & (x < knots[1:])).astype(np.float64)
    for p in range(1, order + 1):
        left_den = knots[p:-1] - knots[: -(p + 1)]
        right_den = knots[p + 1 :] - knots[1:-p]
        with np.errstate(divide="ignore", invalid="ignore"):
            left = np.where(left_den == 0, 0.0, (x - knots[: -(p + 1)]) / np.where(left_den == 0, 1.0, left_den))
            right = np.where(right_den == 0, 0.0,
                             (knots[p + 1 :] - x) / np.where(right_den == 0, 1.0, right_den))
        feats = left * feats[:, :-1] + right * feats[:, 1:]
    return feats


def _nodes(knots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes and weights (Gaussian density included) over the support of the knots."""
    edges = [np.clip(knots[0], -_CUT, _CUT)]
    for lo, hi in zip(knots[:-1], knots[1:]):
        lo, hi = np.clip(lo, -_CUT, _CUT), np.clip(hi, -_CUT, _CUT)
        if hi > lo:
            pieces = int(np.ceil((hi - lo) / _MAX_PIECE))
            edges.extend(lo + (hi - lo) * np.arange(1, pieces + 1) / pieces)
    edges = np.asarray(edges)
    lo, hi = edges[:-1, None], edges[1:, None]
    half = 0.5 * (hi - lo)
    xs = (lo + half * (1.0 + _NODES[None, :])).ravel()
    ws = (half * _WEIGHTS[None, :]).ravel() * np.exp(-0.5 * xs**2) / np.sqrt(2.0 * np.pi)
    return xs, ws


def second_moments(grid: np.ndarray, order: int) -> np.ndarray:
    """``M[d] = E[F(x) F(x)^T]`` for x ~ N(0, 1): ``(d, n_knots) -> (d, n, n)``, float64."""
    grid = np.asarray(grid, np.float64)
    rows, inverse = np.unique(grid, axis=0, return_inverse=True)
    num = grid.shape[1] - order - 1
    per_row = np.zeros((rows.shape[0], num, num))
    for r, knots in enumerate(rows):
        xs, ws = _nodes(knots)
        if xs.size:
            feats = _features(knots, xs, order)
            per_row[r] = feats.T @ (feats * ws[:, None])
    return per_row[np.asarray(inverse).reshape(-1)]


def second_moment_traces(grid: np.ndarray, order: int) -> np.ndarray:
    """``E[sum_i F_i(x)^2]`` per input: ``(d, n_knots) -> (d,)``, float64."""
    grid = np.asarray(grid, np.float64)
    rows, inverse = np.unique(grid, axis=0, return_inverse=True)
    per_row = np.zeros(rows.shape[0])
    for r, knots in enumerate(rows):
        xs, ws = _nodes(knots)
        if xs.size:
            per_row[r] = np.sum(_features(knots, xs, order) ** 2 * ws[:, None])
    return per_row[np.asarray(inverse).reshape(-1)]
