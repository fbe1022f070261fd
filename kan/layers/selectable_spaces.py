"""Candidate activation spaces for S-KAN, and how they are placed on the data.

Two ways a space is fitted to a node's data, both used by :func:`kan.fit_selectable`:

**Range adaptation** (inputs only, :func:`adapt_basis`). The training inputs of node ``d`` give a range
``[min, max]``, rounded outward to a "nice" range ``[lo, hi]`` (:func:`nice_ranges`: multiples of a
round step of about a twentieth of the span, so a few hundred samples of ``U(-2, 2)`` give exactly
``[-2, 2]`` and of ``U(0, 10)`` give ``[0, 10]``).
A space whose ``domain()`` already covers the data and is at most :data:`MAX_WIDENING` times wider
than ``[lo, hi]`` is kept as it is (so a grid the user placed by hand, e.g. an order-1 B-spline with a
knot at 0, is not moved). Every other node is rebuilt with the same configuration on ``[lo, hi]``:

* ``BSpline``, ``GaussianRBF``, ``ReLUKAN``, affine ``Chebyshev``: their grid range becomes ``[lo, hi]``;
* ``Fourier``: its features are global, so the domain rule does not apply; a Fourier space is kept
  while its top harmonic makes at least half a period across the range (``G w (hi - lo) >= pi``),
  else its base frequency becomes ``w = 2 / (hi - lo)``, the cycles per range of the default
  ``w = 1`` on ``[-1, 1]`` (via :class:`InputAffine`). Which frequency a node needs depends on its
  function, not on its range: the refit's shape search below finds it;
* tanh ``Chebyshev`` (ChebyKAN): ``tanh((x - centre) * 2 / (hi - lo))``, so the range meets the tanh
  on ``[-1, 1]`` as raw inputs in ``[-1, 1]`` do; via :class:`InputAffine`;
* other bases (``Rational``, user-defined) are left as they are.

**Shape search** (inputs and the node's partial residual, training rows only, :func:`shape_trials`).
Four families have nonlinear placement parameters that ridge least squares cannot fit; the refit
criterion searches them per node on a grid, then zooms four times (each 4x finer) around the best (the
grid-then-zoom fit of pykan's symbolic snapping, Liu et al. 2024, arXiv 2404.19756), and counts them
as parameters. The placement is the one whose *leading* function fits the residual best (the
``c f(a x + b) + d`` fit of symbolic snapping with ``f`` the first harmonic, the tanh, or one bump),
so a node that is one member of the family gets that member's placement exactly, and any other node a
placement by its dominant frequency, transition or bump; B-splines use the fit of all their functions:

* ``fourier``: the base frequency ``w`` (1 parameter), ``0.2 .. 6`` base periods across the range;
* tanh ``chebyshev``: the tanh's centre and slope (2 parameters);
* ``rbf``: a common offset of the centres (within half a spacing) and the width (2 parameters);
* B-splines (any order): a common offset of the knots within half a spacing (1 parameter), so an
  order-1 spline can put a knot on a kink wherever it is.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Optional, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from bases import (Basis, BSpline, Chebyshev, Fourier, GaussianRBF, Rational, ReLUKAN, buffer_field,
                   check_last_dim)

#: A kept space may be at most this many times wider than the node's nice data range.
MAX_WIDENING = 1.5

#: name -> basis factory ``f(in_features) -> Basis`` for candidates given by name. Grids are on
#: ``(-1, 1)`` here; :func:`adapt_basis` moves them onto each node's data range.
CANDIDATES: dict[str, Callable[[int], Basis]] = {
    "bspline": lambda d: BSpline(d),  # cubic, 5 intervals
    "rbf": lambda d: GaussianRBF(d),  # 8 Gaussian bumps
    "fourier": lambda d: Fourier(d, 3),  # 3 harmonics
    "chebyshev": lambda d: Chebyshev(d),  # ChebyKAN: T_0..T_5 of tanh(x), saturating
    "relu_kan": lambda d: ReLUKAN(d),
    "rational": lambda d: Rational(d, num_groups=d),
    "linear_spline": lambda d: BSpline(d, 4, 1),  # piecewise linear, 4 intervals: kinks
    "polynomial": lambda d: Chebyshev(d, 3, input_map="affine"),  # cubic polynomials of x
}


class InputAffine(Basis):
    """``inner((x - shift) * scale)``: any basis on a per-input affine map of its input.

    Features ``(..., d) -> (..., d, k)`` with ``k = inner.num_functions``; ``shift`` and ``scale`` are
    per-input buffers of shape ``(d,)`` (``scale > 0``). The domain is the inner domain mapped back.
    """

    inner: Basis
    shift: Float[Array, " d"] = buffer_field()
    scale: Float[Array, " d"] = buffer_field()
    in_features: int = eqx.field(static=True)

    def __init__(self, inner: Basis, shift: Float[Array, " d"] | float = 0.0,
                 scale: Float[Array, " d"] | float = 1.0):
        if not isinstance(inner, Basis):
            raise TypeError(f"InputAffine: inner must be a bases.Basis, got {type(inner).__name__}")
        d = inner.in_features
        shift = np.broadcast_to(np.asarray(shift, np.float64), (d,))
        scale = np.broadcast_to(np.asarray(scale, np.float64), (d,))
        if not (np.all(np.isfinite(shift)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise ValueError(f"InputAffine: shift must be finite and scale finite and > 0, got "
                             f"shift={shift.tolist()}, scale={scale.tolist()}")
        self.inner, self.in_features = inner, int(d)
        self.shift, self.scale = jnp.asarray(shift, jnp.float32), jnp.asarray(scale, jnp.float32)

    @property
    def num_functions(self) -> int:
        return self.inner.num_functions

    def __call__(self, x: Float[Array, "... d"]) -> Float[Array, "... d k"]:
        check_last_dim(x, self.in_features, "InputAffine")
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        shift = jax.lax.stop_gradient(self.shift).astype(x.dtype)
        scale = jax.lax.stop_gradient(self.scale).astype(x.dtype)
        return self.inner((x - shift) * scale)

    def domain(self) -> tuple[Float[Array, " d"], Float[Array, " d"]]:
        lo, hi = self.inner.domain()
        return lo / self.scale + self.shift, hi / self.scale + self.shift

    def flops_per_input(self) -> int:
        return self.inner.flops_per_input() + 2

    def select_inputs(self, indices: Int[Array, " m"]) -> "InputAffine":
        idx = np.asarray(indices)
        return InputAffine(self.inner.select_inputs(idx), np.asarray(self.shift)[idx],
                           np.asarray(self.scale)[idx])


# ----- ranges ---------------------------------------------------------------------------------------
def nice_ranges(x: Float[Array, "n d"]) -> tuple[np.ndarray, np.ndarray]:
    """Per-column range of ``x (n, d)`` rounded outward to multiples of a round step: the smallest of
    ``1, 2, 5`` times a power of ten that is at least a twentieth of the column's span (a column of one
    value gets ``value -+ 0.5``). Returns ``(lo, hi)``, each ``(d,)``."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[0] < 1 or not np.all(np.isfinite(x)):
        raise ValueError(f"nice_ranges: expected finite samples of shape (n>=1, d), got {x.shape}")
    lo, hi = x.min(0), x.max(0)
    span = hi - lo
    flat = span <= 1e-6 * np.maximum(1.0, np.abs(lo))
    raw = np.where(flat, 1.0, span) / 20
    power = 10.0 ** np.floor(np.log10(raw))
    step = np.select([raw <= power, raw <= 2 * power, raw <= 5 * power], [power, 2 * power, 5 * power], 10 * power)
    nlo = np.floor(lo / step + 1e-9) * step
    nhi = np.ceil(hi / step - 1e-9) * step
    return np.where(flat, lo - 0.5, nlo), np.where(flat, hi + 0.5, nhi)


def _keep_mask(basis: Basis, xmin: np.ndarray, xmax: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    blo, bhi = (np.asarray(a, np.float64) for a in basis.domain())
    slack = 1e-3 * (hi - lo)
    return (blo <= xmin + slack) & (bhi >= xmax - slack) & (bhi - blo <= MAX_WIDENING * (hi - lo) + slack)


def _rows(new: np.ndarray, old: np.ndarray, keep: np.ndarray) -> np.ndarray:
    return np.where(keep.reshape((-1,) + (1,) * (new.ndim - 1)), old, new)


def adapt_basis(basis: Basis, x: Float[Array, "n d"]) -> Basis:
    """``basis`` placed on the data range of every input column of ``x`` ``(n, d)`` (module docstring:
    nodes whose domain already fits are kept; unknown basis types are returned unchanged)."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[1] != basis.in_features:
        raise ValueError(f"adapt_basis: expected samples of shape (n, {basis.in_features}), got {x.shape}")
    lo, hi = nice_ranges(x)
    d = basis.in_features
    if _family(basis) == "fourier":
        wrapped = searchable(basis)
        inner, span = wrapped.inner, hi - lo
        w = inner.frequency * np.asarray(wrapped.scale, np.float64)
        keep = inner.grid_size * w * span >= math.pi
        if keep.all():
            return basis
        return InputAffine(inner, _rows((lo + hi) / 2, np.asarray(wrapped.shift), keep),
                           _rows(2.0 / (span * inner.frequency), np.asarray(wrapped.scale), keep))
    keep = _keep_mask(basis, x.min(0), x.max(0), lo, hi)
    if keep.all():
        return basis
    if isinstance(basis, InputAffine):
        ilo, ihi = (np.asarray(a, np.float64) for a in basis.inner.domain())
        scale = (ihi - ilo) / (hi - lo)
        shift = lo - ilo / scale
        return InputAffine(basis.inner, _rows(shift, np.asarray(basis.shift), keep),
                           _rows(scale, np.asarray(basis.scale), keep))
    if isinstance(basis, BSpline):
        fresh = BSpline(d, basis.grid_size, basis.order, (lo, hi))
        grid = _rows(np.asarray(fresh.grid), np.asarray(basis.grid), keep)
        return BSpline(d, basis.grid_size, basis.order, grid=grid, uniform=basis.uniform)
    if isinstance(basis, GaussianRBF):
        fresh = GaussianRBF(d, basis.grid_size, (lo, hi))
        return eqx.tree_at(lambda b: (b.centers, b.inv_width), basis, (
            jnp.asarray(_rows(np.asarray(fresh.centers), np.asarray(basis.centers), keep), jnp.float32),
            jnp.asarray(_rows(np.asarray(fresh.inv_width), np.asarray(basis.inv_width), keep), jnp.float32)))
    if isinstance(basis, ReLUKAN):
        if basis.shared or basis.points()[0].shape[0] != d:
            return ReLUKAN(d, basis.grid_size, basis.order, (float(lo.min()), float(hi.max())),
                           trainable=basis.trainable, shared=True)
        fresh = ReLUKAN(d, basis.grid_size, basis.order, (lo, hi), trainable=basis.trainable)
        start = _rows(np.asarray(fresh.points()[0]), np.asarray(basis.points()[0]), keep)
        end = _rows(np.asarray(fresh.points()[1]), np.asarray(basis.points()[1]), keep)
        if basis.trainable:
            return eqx.tree_at(lambda b: (b.start, b.end), fresh, (jnp.asarray(start), jnp.asarray(end)))
        return eqx.tree_at(lambda b: (b.start_fixed, b.end_fixed), fresh, (jnp.asarray(start), jnp.asarray(end)))
    if isinstance(basis, Chebyshev) and basis.input_map == "affine":
        new = Chebyshev(d, basis.degree, (lo, hi), input_map="affine")
        return eqx.tree_at(lambda b: (b.lo, b.hi), new, (
            jnp.asarray(_rows(lo, np.asarray(basis.lo), keep), jnp.float32),
            jnp.asarray(_rows(hi, np.asarray(basis.hi), keep), jnp.float32)))
    if isinstance(basis, Chebyshev):
        return adapt_basis(_as_affine(basis), x)
    return basis


def _as_affine(basis: Basis) -> InputAffine:
    """Fourier / tanh-Chebyshev as an identity :class:`InputAffine` around a canonical inner basis."""
    d = basis.in_features
    if isinstance(basis, Fourier):
        return InputAffine(Fourier(d, basis.grid_size), 0.0, basis.frequency)
    if isinstance(basis, Chebyshev) and basis.input_map == "tanh":
        # the tanh map ignores lo/hi; keep them as the domain by mapping them onto (-1, 1)
        lo, hi = np.asarray(basis.lo, np.float64), np.asarray(basis.hi, np.float64)
        return InputAffine(Chebyshev(d, basis.degree), (lo + hi) / 2, 2 / (hi - lo))
    raise TypeError(f"_as_affine: no canonical form for {type(basis).__name__}")


# ----- shape search ---------------------------------------------------------------------------------
def _family(basis: Basis) -> Optional[str]:
    if isinstance(basis, Fourier) or (isinstance(basis, InputAffine) and isinstance(basis.inner, Fourier)):
        return "fourier"
    tanh = lambda b: isinstance(b, Chebyshev) and b.input_map == "tanh"
    if tanh(basis) or (isinstance(basis, InputAffine) and tanh(basis.inner)):
        return "tanh"
    if isinstance(basis, GaussianRBF) and basis.grid_size > 1:
        return "rbf"
    if isinstance(basis, BSpline):
        return "bspline"
    return None


_SHAPES = {"fourier": 1, "tanh": 2, "rbf": 2, "bspline": 1, None: 0}


def shape_parameters(basis: Basis) -> int:
    """Placement parameters the refit searches for ``basis`` per node (0 for none)."""
    return _SHAPES[_family(basis)]


def searchable(basis: Basis) -> Basis:
    """``basis`` in the form whose shape :func:`shape_trials` varies (Fourier and tanh-Chebyshev as
    :class:`InputAffine`; others unchanged)."""
    return _as_affine(basis) if isinstance(basis, (Fourier, Chebyshev)) and _family(basis) else basis


def _grid(family: str) -> list[np.ndarray]:
    """Axes of the first search grid, in the units of :func:`_place`."""
    offsets = np.linspace(-0.5, 0.5, 8, endpoint=False)  # grid shift, in knot / centre spacings
    if family == "fourier":
        return [np.linspace(0.2, 6.0, 59)]  # base periods across the range
    if family == "tanh":
        return [np.linspace(-1.0, 1.0, 9), np.log(np.geomspace(0.25, 16.0, 13))]  # centre, log slope
    if family == "rbf":
        return [offsets, np.log(np.geomspace(0.25, 4.0, 13))]  # offset, log width / spacing
    return [offsets]


_TRIALS = 128  # trial count every search round is padded to, so each family compiles once


def _config(basis: Basis, family: str) -> tuple:
    if family == "fourier":
        return (basis.inner.grid_size, basis.inner.frequency)
    if family == "tanh":
        return (basis.inner.degree,)
    if family == "rbf":
        return (basis.grid_size,)
    return (basis.grid_size, basis.order)


@functools.lru_cache(maxsize=32)
def _template(family: str, config: tuple) -> Basis:
    """A basis of :data:`_TRIALS` inputs in the configuration ``config`` of ``family``."""
    if family == "fourier":
        return InputAffine(Fourier(_TRIALS, config[0], frequency=config[1]))
    if family == "tanh":
        return InputAffine(Chebyshev(_TRIALS, config[0]))
    if family == "rbf":
        return GaussianRBF(_TRIALS, config[0])
    return BSpline(_TRIALS, config[0], config[1], uniform=False)


def _buffers(basis: Basis) -> tuple[Array, ...]:
    if isinstance(basis, InputAffine):
        return basis.shift, basis.scale
    if isinstance(basis, GaussianRBF):
        return basis.centers, basis.inv_width
    return (basis.grid,)


def _place(family: str, config: tuple, row: tuple[np.ndarray, ...], lo: float, hi: float,
           params: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-trial buffers (those of :func:`_buffers`) for the placement ``params (m, p)`` in the units of
    :func:`_grid`; ``row`` holds the node's current buffers, ``[lo, hi]`` its nice range."""
    half, centre = (hi - lo) / 2, (hi + lo) / 2
    if family == "fourier":
        base = 2 * math.pi / ((hi - lo) * config[1])
        return np.full(params.shape[0], centre), base * params[:, 0]
    if family == "tanh":
        return centre + params[:, 0] * half, np.exp(params[:, 1]) / half
    points = row[0]  # RBF centres or B-spline knots of the node, shifted as a whole
    spacing = (points[-1] - points[0]) / (points.shape[0] - 1)
    shifted = points[None, :] + params[:, :1] * spacing
    if family == "rbf":
        return shifted, 1.0 / (spacing * np.exp(params[:, 1]))
    return (shifted,)


@functools.lru_cache(maxsize=32)
def _trial_features(family: str, config: tuple) -> Callable[..., Array]:
    """Compiled ``(buffers, x (n,)) -> features (n, trials, k)`` of the family's template."""
    template = _template(family, config)

    def features(buffers: tuple[Array, ...], x: Array) -> Array:
        trial = eqx.tree_at(_buffers, template, buffers)
        return trial(jnp.broadcast_to(x[:, None], (x.shape[0], _TRIALS)))

    return jax.jit(features)


_features = eqx.filter_jit(lambda basis, x: basis(x))


def _lead_score(family: str, feats: np.ndarray, score: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Loss of every trial ``feats (m, n, k)`` for the placement: the fit of the family's leading
    function (first harmonic, ``T_1`` of the tanh, the best single bump) or, for B-splines, of all."""
    if family == "fourier":
        g = feats.shape[2] // 2
        return score(feats[:, :, [0, g]])
    if family == "tanh":
        return score(feats[:, :, :2])
    if family == "rbf":
        return np.min(np.stack([score(feats[:, :, [c]]) for c in range(feats.shape[2])]), axis=0)
    return score(feats)


def shape_trials(basis: Basis, node: int, x: Float[Array, " n"], score: Callable[[np.ndarray], np.ndarray],
                 lo: float, hi: float, zooms: int = 4) -> Basis:
    """``basis`` with node ``node``'s placement set to the trial of lowest ``score``.

    ``x`` ``(n,)`` are the node's training inputs, ``score(F)`` maps trial features ``(m, n, k)`` to
    ``(m,)`` losses (the refit's ridge residual), ``[lo, hi]`` the node's nice range. The grid of
    :func:`_grid` is searched, then ``zooms`` finer grids around the best point (the module docstring).
    ``basis`` must be in :func:`searchable` form; bases without a shape come back unchanged.
    """
    family = _family(basis)
    if family is None:
        return basis
    config = _config(basis, family)
    evaluate = _trial_features(family, config)
    row = tuple(np.asarray(b[node], np.float64) for b in _buffers(basis))
    axes = _grid(family)
    steps = [a[1] - a[0] for a in axes]
    xs = jnp.asarray(x, jnp.float32)
    best = None
    for _ in range(zooms + 1):
        mesh = np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=1)
        padded = np.concatenate([mesh, np.repeat(mesh[-1:], _TRIALS - mesh.shape[0], axis=0)])
        bufs = tuple(np.float32(a) for a in _place(family, config, row, lo, hi, padded))
        feats = np.moveaxis(np.asarray(evaluate(bufs, xs), np.float64)[:, : mesh.shape[0]], 1, 0)
        best = mesh[int(np.argmin(_lead_score(family, feats, score)))]
        steps = [s / 4 for s in steps]
        axes = [b + s * np.arange(-4, 5) for b, s in zip(best, steps)]
    placed = _place(family, config, row, lo, hi, best[None, :])
    new = tuple(old.at[node].set(jnp.asarray(p[0], jnp.float32)) for old, p in zip(_buffers(basis), placed))
    return eqx.tree_at(_buffers, basis, new)  # a shifted uniform B-spline grid stays uniform


def node_features(basis: Basis, x: Float[Array, "n d"]) -> np.ndarray:
    """Features ``(n, d, k)`` of ``basis`` on ``x``, as float64 numpy (one compiled call)."""
    return np.asarray(_features(basis, jnp.asarray(x, jnp.float32)), np.float64)
