"""Fit sampled edge curves to every library function as ``c f(a x + b) + d``, all at once.

For E curves ``y_e(x_e)`` sampled at n points and L candidates, one jitted call (vmap over curves,
a Python loop over candidates inside the trace) does, per (curve, candidate):

1. normalise: ``x = m + s t`` with t in [-1, 1] and ``y = y_m + y_s u`` so that the search is
   scale-free (huge-range edges behave like unit-range ones);
2. grid search over ``(alpha, beta)`` in ``[-10, 10]^2`` for ``f(alpha t + beta)``, each grid point
   with its closed-form least-squares ``(c, d)`` (pykan's procedure, Liu et al. 2024), then
   ``zooms`` finer grids around the best point;
3. a few Levenberg-Marquardt (damped Gauss-Newton) steps on all four parameters;
4. the true coefficient of determination ``R^2 = 1 - SSE / SST`` of the final fit (pykan reports
   the squared correlation of the grid fit instead). A constant curve (SST = 0) gets R^2 = 1 for
   every candidate that reproduces it, so the cheapest one, ``"0"`` (a constant ``d``), wins.

Ranking (:func:`choose`): ``score = log10(1 - R^2 + noise_floor) + complexity_weight * complexity``:
one extra unit of complexity has to buy a ``10**complexity_weight``-fold reduction of the unexplained
variance. ``noise_floor`` (1e-6) caps the credit for fits better than a trained edge's accuracy;
raising it to 1e-4 stops ``sin(a x + b)`` from out-scoring simpler fits of imperfect edges but makes
equal-complexity look-alikes on narrow ranges tie (``1/x`` then beats ``exp`` on [0.5, 2]), so it
stays a parameter. Candidates within ``margin`` of the best score (and fitting at most 10x worse) count as ties and the first in library order
wins (so ``x^2`` beats ``cos`` of a tiny argument, which imitates a parabola).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from bases import host_array
from bases.symbolic_functions import get_jnp_function, is_builtin
from kan.trace_cache import exported_call

from .library import Library, as_library

_SEARCH_RANGE = 10.0


def _closed_form_cd(feats: Array, u: Array) -> tuple[Array, Array, Array]:
    """Least-squares ``u ~ c F + d`` for many candidate rows: feats (g, n), u (n,) -> c, d, sse (g,)."""
    scale = jnp.max(jnp.abs(feats), axis=-1, keepdims=True) + 1e-30
    fs = feats / scale
    f_mean = jnp.mean(fs, axis=-1, keepdims=True)
    fc = fs - f_mean
    uc = u - jnp.mean(u)
    var = jnp.sum(fc * fc, axis=-1)
    cov = fc @ uc
    ok = var > 1e-10 * u.shape[0]
    c_s = jnp.where(ok, cov / jnp.where(ok, var, 1.0), 0.0)
    sse = jnp.sum(uc * uc) - c_s * cov
    sse = jnp.where(jnp.isfinite(sse), sse, jnp.inf)
    d = jnp.mean(u) - c_s * f_mean[:, 0]
    return c_s / scale[:, 0], d, sse


def _grid(center: Array, half: Array, size: int) -> Array:
    offsets = jnp.linspace(-1.0, 1.0, size)
    alpha = center[0] + half * offsets
    beta = center[1] + half * offsets
    aa, bb = jnp.meshgrid(alpha, beta, indexing="ij")
    return jnp.stack([aa.ravel(), bb.ravel()], axis=-1)  # (size^2, 2)


def _fit_one(fn, t: Array, u: Array, grid_size: int, zooms: int, steps: int) -> tuple[Array, Array]:
    """Best ``(alpha, beta, c, d)`` and SSE of ``u ~ c fn(alpha t + beta) + d`` for one curve.

    ``fn`` (a ``lax.switch`` over the library in :func:`_fit_all`) is called at four places only, since
    tracing, lowering and compiling repeat every library function at each: the zoom loop, the
    residual with its Jacobian (one forward-mode pass), the trial step and the final loss."""

    def zoom(_, carry):
        center, half, _ = carry
        pts = _grid(center, half, grid_size)
        feats = fn(pts[:, :1] * t[None, :] + pts[:, 1:])
        c, d, sse = _closed_form_cd(feats, u)
        idx = jnp.argmin(sse)
        best = jnp.array([pts[idx, 0], pts[idx, 1], c[idx], d[idx]])
        return pts[idx], half * 2.0 / (grid_size - 1), best

    start = (jnp.zeros(2), jnp.asarray(_SEARCH_RANGE), jnp.zeros(4))
    _, _, best = jax.lax.fori_loop(0, zooms + 1, zoom, start)

    def residual(p):
        return p[2] * fn(p[0] * t + p[1]) + p[3] - u

    def finite_sum_of_squares(r):
        value = jnp.sum(r * r)
        return jnp.where(jnp.isfinite(value), value, jnp.inf)

    def lm_step(_, carry):
        p, lam = carry
        # Residual and Jacobian (n, 4) from one vmapped forward-mode pass (the primal is shared).
        r, jac = jax.vmap(lambda v: jax.jvp(residual, (p,), (v,)), out_axes=(None, 1))(jnp.eye(4, dtype=p.dtype))
        jtj = jac.T @ jac
        g = jac.T @ r
        damp = lam * (jnp.diag(jnp.diag(jtj)) + 1e-9 * jnp.eye(4))
        delta = jnp.linalg.solve(jtj + damp, -g)
        delta = jnp.where(jnp.all(jnp.isfinite(delta)), delta, 0.0)
        cand = p + delta
        better = finite_sum_of_squares(residual(cand)) < finite_sum_of_squares(r)
        return jnp.where(better, cand, p), jnp.where(better, lam * 0.3, lam * 4.0)

    p, _ = jax.lax.fori_loop(0, steps, lm_step, (best, jnp.asarray(1e-3)))
    return p, finite_sum_of_squares(residual(p))


@functools.partial(jax.jit, static_argnames=("names", "grid_size", "zooms", "steps"))
def _fit_all(t: Array, u: Array, names: tuple[str, ...], grid_size: int, zooms: int, steps: int):
    """(E, n) normalised curves -> params (E, L, 4), SSE (E, L). A scan over candidates with
    ``lax.switch`` inside keeps one copy of the search machinery in the compiled program."""
    fns = [get_jnp_function(name).fn for name in names]

    def per_candidate(_, j):
        fn = lambda z: jax.lax.switch(j, fns, z)
        p, sse = jax.vmap(lambda tt, uu: _fit_one(fn, tt, uu, grid_size, zooms, steps))(t, u)
        return None, (p, sse)

    _, (params, sses) = jax.lax.scan(per_candidate, None, jnp.arange(len(names)))
    return jnp.swapaxes(params, 0, 1), jnp.swapaxes(sses, 0, 1)


@dataclasses.dataclass
class CurveFits:
    """Fits of E curves to L candidates: ``params`` (E, L, 4) as raw-coordinate ``(a, b, c, d)``
    (normalised per function, see :func:`normalize_affine`), ``r2`` (E, L), ``names`` (L,),
    ``complexity`` (L,)."""

    names: tuple[str, ...]
    params: np.ndarray
    r2: np.ndarray
    complexity: np.ndarray


def normalize_affine(name: str, a: float, b: float, c: float, d: float) -> tuple[float, float, float, float]:
    """Canonical ``(a, b, c, d)`` giving the same ``c f(a x + b) + d``: identity ``x`` gets a = 1, b = 0;
    homogeneous functions (powers, roots, abs) and log get ``|a| = 1``; exp gets b = 0; ``"0"`` gets c = 0."""
    fn = get_jnp_function(name)
    if name == "0":
        return 1.0, 0.0, 0.0, d
    if name == "x":
        return 1.0, 0.0, c * a, c * b + d
    if fn.degree is not None and a != 0.0:
        mag = abs(a)
        return float(np.sign(a)), b / mag, c * mag**fn.degree, d
    if name == "log" and a != 0.0:  # c log(a x + b) = c log|a| + c log(sign(a) x + b / |a|)
        mag = abs(a)
        return float(np.sign(a)), b / mag, c, d + c * float(np.log(mag))
    if fn.exp_shift and abs(b) < 30.0:
        return a, 0.0, c * float(np.exp(b)), d
    return a, b, c, d


def fit_curves(
    x: Float[Array, "E n"],
    y: Float[Array, "E n"],
    library: Library | Sequence[str] | None = None,
    *,
    grid_size: int = 31,
    zooms: int = 2,
    steps: int = 12,
) -> CurveFits:
    """Fit every curve ``y[e]`` sampled at ``x[e]`` to every library function (see module docstring)."""
    lib = as_library(library)
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.ndim != 2 or x.shape != y.shape or x.shape[1] < 3:
        raise ValueError(f"fit_curves: x and y must both have shape (E, n>=3), got {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("fit_curves: curves contain NaN or inf")
    if grid_size < 3 or zooms < 0 or steps < 0:
        raise ValueError(f"fit_curves: need grid_size >= 3, zooms >= 0, steps >= 0; got {grid_size}, {zooms}, {steps}")
    lo, hi = x.min(axis=1), x.max(axis=1)
    m, s = (hi + lo) / 2, (hi - lo) / 2
    s = np.where(s > 1e-12 * np.maximum(1.0, np.abs(m)), s, 1.0)
    ym, ys = y.mean(axis=1), y.std(axis=1)
    constant = ys <= 1e-7 * np.maximum(1.0, np.abs(ym))
    ys = np.where(constant, 1.0, ys)
    t = (x - m[:, None]) / s[:, None]
    u = np.where(constant[:, None], 0.0, (y - ym[:, None]) / ys[:, None])
    # Pad the number of curves to a power of two (>= 8) so repeated calls reuse one compilation.
    num = t.shape[0]
    padded = max(8, 1 << (num - 1).bit_length())
    t_pad = np.concatenate([t, np.repeat(t[:1], padded - num, axis=0)])
    u_pad = np.concatenate([u, np.repeat(u[:1], padded - num, axis=0)])
    args = (host_array(t_pad, np.float32), host_array(u_pad, np.float32))
    static = dict(names=lib.names, grid_size=int(grid_size), zooms=int(zooms), steps=int(steps))
    if all(is_builtin(name) for name in lib.names):
        # through a stored export where the compilation cache is on: a warm process skips its 0.7 s trace
        p, sse = exported_call(_fit_all, "fit_all", args, static)
    else:  # a user function's code is not in the stored program's key: trace it in this process
        p, sse = _fit_all(*args, **static)
    p, sse = np.asarray(p, np.float64)[:num], np.asarray(sse, np.float64)[:num]
    sst = np.sum(u * u, axis=1)  # of the normalised curve: n, or 0 for a constant curve
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(sst[:, None] > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0)[:, None],
                      np.where(sse <= 1e-12, 1.0, 0.0))
    r2 = np.nan_to_num(r2, nan=-np.inf, neginf=-np.inf)
    params = np.empty_like(p)
    for e in range(p.shape[0]):
        for j, name in enumerate(lib.names):
            alpha, beta, c, d = p[e, j]
            raw = (alpha / s[e], beta - alpha * m[e] / s[e], ys[e] * c, ym[e] + ys[e] * d)
            params[e, j] = normalize_affine(name, *raw)
    return CurveFits(lib.names, params, r2, np.asarray(lib.complexities))


def scores(fits: CurveFits, complexity_weight: float = 1.0, noise_floor: float = 1e-6) -> np.ndarray:
    """``log10(1 - R^2 + noise_floor) + complexity_weight * complexity``, shape (E, L); lower is better."""
    unexplained = np.clip(1.0 - fits.r2, 0.0, None)
    return np.log10(unexplained + noise_floor) + complexity_weight * fits.complexity[None, :]


def choose(fits: CurveFits, complexity_weight: float = 1.0, noise_floor: float = 1e-6,
           margin: float = 0.5) -> np.ndarray:
    """Index (E,) of the chosen candidate per curve: the first in library order among those whose
    score is within ``margin`` of the best and whose fit is at most 10x worse (unexplained variance)."""
    sc = scores(fits, complexity_weight, noise_floor)
    best = np.argmin(sc, axis=1)
    quality = sc - complexity_weight * fits.complexity[None, :]  # the log10 unexplained-variance part
    rows = np.arange(sc.shape[0])
    # A tie must also fit nearly as well (at most 10x the unexplained variance of the best-scoring
    # candidate): otherwise a poor fit of a curved edge lets "0" (score 0) win the tie.
    tie = (sc <= sc[rows, best][:, None] + margin) & (quality <= quality[rows, best][:, None] + 1.0)
    return np.argmax(tie, axis=1)
