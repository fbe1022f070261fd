"""The refit criterion of S-KAN: every candidate space refitted alone per node, compared on held-out rows.

For one layer ``y ~ bias + sum_d f_d(x_d)`` (the additive form of a KAN layer's outputs), backfitting
(Hastie & Tibshirani 1990, "Generalized Additive Models", ch. 4) fits one node at a time to its
*partial residual* ``r_d = y - bias - sum_{e != d} f_e(x_e)``. For a basis with fixed features
``F(x) (n, k)`` that fit is ridge least squares, exact and cheap:

    W = (A^T A + ridge * diag(A^T A))^(-1) A^T (r - mean r),   A = F - mean F

(the ridge relative to each column's energy, i.e. a plain ridge on standardised columns). Each round
first solves the whole additive model jointly for the current spaces (one ridge solve over all
nodes' features: the backfitting fixed point, reached at once), then refits every node with every
candidate space on its partial residual on the training rows (after the shape search of
:func:`kan.layers.selectable_spaces.shape_trials` where the space has one) and keeps, for the next node's
residual, the fit with the lowest held-out error (the joint solve needs good spaces to converge to).

In the last round each node's space is chosen on the validation rows. Every space contributes its
*forward path* (:func:`forward_path`): its fits on the first ``m = 1..k`` of its functions picked
greedily by training error, each counted as ``m`` plus the space's searched placement parameters
(its effective parameters; a Gaussian bump is one RBF function, a sinusoid two Fourier functions,
``|x - a|`` a handful of hat functions, however many functions the space has). Among all these fits
the one-standard-error rule (Breiman et al. 1984, "Classification and Regression Trees", sec. 3.4;
Hastie, Tibshirani & Friedman, "The Elements of Statistical Learning", sec. 7.10), made paired, keeps
those *within tolerance* of the fit ``b`` of lowest mean held-out error: with ``e_fi`` the squared
held-out error of fit ``f`` on row ``i``,

    mean_i(e_fi - e_bi) <= z * SE_i(e_fi - e_bi) + tolerance * Var(r_d on the held-out rows),

and the space of the one with the fewest effective parameters wins (ties to the lower held-out
error). ``tolerance`` treats differences below that fraction of the node's variance (float32
round-off, ridge bias) as ties. The chosen space keeps all its functions (:func:`backfit` refits it);
the count only ranks the spaces. Only the training data passed in is used, split into fitting and
held-out rows by the caller.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import numpy as np
from jaxtyping import Bool, Float, Int

from bases import Basis

from .selectable_spaces import nice_ranges, node_features, searchable, shape_parameters, shape_trials


class Refit(NamedTuple):
    """Result of :func:`backfit` for a layer of ``d`` nodes, ``C`` spaces and ``o`` outputs.

    ``bases``: the spaces with each node's searched placement; ``choice (d,)``: index of every node's
    space; ``weights[d]``: its ``(k_c, o)`` coefficients; ``bias (o,)``; ``heldout_error (d, C)``: mean
    held-out squared error of every space (all its functions) over the variance of the node's held-out
    partial residual; ``parameters (d, C)``: the effective parameters each space needed at each node
    (fewest functions within tolerance plus placement parameters; inf if never within tolerance).
    """

    bases: tuple[Basis, ...]
    choice: np.ndarray
    weights: tuple[np.ndarray, ...]
    bias: np.ndarray
    heldout_error: np.ndarray
    parameters: np.ndarray


def ridge(features: Float[np.ndarray, "m n k"], target: Float[np.ndarray, "n o"],
          strength: float) -> tuple[Float[np.ndarray, "m k o"], Float[np.ndarray, "m k"]]:
    """Centred ridge fits of ``target (n, o)`` on each of ``m`` feature sets ``features (m, n, k)``.

    Returns ``W (m, k, o)`` and the feature means ``(m, k)``; the prediction of set ``j`` is
    ``(F_j - mean_j) W_j + mean(target)``.
    """
    mean = features.mean(axis=1)
    a = features - mean[:, None]
    b = target - target.mean(axis=0)
    at = np.swapaxes(a, 1, 2)
    gram = at @ a
    k = gram.shape[-1]
    diag = np.diagonal(gram, axis1=1, axis2=2)
    gram = gram + (strength * diag + 1e-12 * (1.0 + diag.mean(-1, keepdims=True)))[..., None] * np.eye(k)
    rhs = at @ b
    try:
        w = np.linalg.solve(gram, rhs)
    except np.linalg.LinAlgError:  # singular even with the ridge: least-norm solution per set
        w = np.stack([np.linalg.lstsq(g, r, rcond=None)[0] for g, r in zip(gram, rhs)])
    return w, mean


def _residual_sse(features: np.ndarray, target: np.ndarray, strength: float) -> np.ndarray:
    w, mean = ridge(features, target, strength)
    pred = (features - mean[:, None]) @ w
    sse = np.sum((target - target.mean(0) - pred) ** 2, axis=(1, 2))
    return np.where(np.isfinite(sse), sse, np.inf)


def choose(errors: Float[np.ndarray, "p n"], parameters: Float[np.ndarray, " p"], variance: float, z: float,
           tolerance: float) -> int:
    """The row the paired one-standard-error rule keeps (module docstring): among the fits whose
    held-out error is within tolerance of the best one, the one of fewest ``parameters``, ties to the
    lower error.

    ``errors (P, n)``: squared held-out error of ``P`` fits on every held-out row; ``parameters (P,)``.
    """
    ok, mean = qualified(errors, variance, z, tolerance)
    order = sorted(np.flatnonzero(ok), key=lambda c: (parameters[c], mean[c]))
    return int(order[0])


def qualified(errors: Float[np.ndarray, "p n"], variance: float, z: float,
              tolerance: float) -> tuple[Bool[np.ndarray, " p"], Float[np.ndarray, " p"]]:
    """``(ok (P,), mean (P,))``: which fits are within tolerance of the best, and their mean errors."""
    errors = np.where(np.isfinite(errors), errors, np.inf)
    mean = errors.mean(axis=1)
    best = int(np.argmin(mean))
    ok = np.zeros(errors.shape[0], bool)
    if np.isfinite(mean[best]):
        diff = errors - errors[best]
        with np.errstate(invalid="ignore"):
            se = np.nan_to_num(diff.std(axis=1, ddof=1), nan=np.inf) / np.sqrt(errors.shape[1])
        ok = np.isfinite(mean) & (diff.mean(axis=1) <= z * se + tolerance * variance)
    ok[best] = True
    return ok, mean


def forward_path(ft: Float[np.ndarray, "n k"], rt: Float[np.ndarray, "n o"], fv: Float[np.ndarray, "v k"],
                 rv: Float[np.ndarray, "v o"], strength: float) -> Float[np.ndarray, "k v"]:
    """Held-out squared errors ``(k, n_val)`` of forward stepwise selection (Hastie, Tibshirani &
    Friedman, "The Elements of Statistical Learning", sec. 3.3.2) over the ``k`` columns of one space:
    row ``m - 1`` is the ridge fit on the ``m`` columns picked greedily by training error.

    ``ft (n, k)`` / ``fv (n_val, k)``: the space's features on the training / held-out rows; ``rt``,
    ``rv``: the partial residuals there, ``(n, o)`` and ``(n_val, o)``.
    """
    chosen: list[int] = []
    out = []
    for _ in range(ft.shape[1]):
        rest = [i for i in range(ft.shape[1]) if i not in chosen]
        sse = _residual_sse(np.stack([ft[:, chosen + [i]] for i in rest]), rt, strength)
        chosen.append(rest[int(np.argmin(sse))])
        w, mean = ridge(ft[None][:, :, chosen], rt, strength)
        pv = (fv[:, chosen] - mean[0]) @ w[0] + rt.mean(0)
        out.append(np.sum((rv - pv) ** 2, axis=1))
    return np.stack(out)


def _split(features: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features[train], features[~train]


def _joint(feats: list[np.ndarray], target: np.ndarray, strength: float) -> tuple[list, list]:
    """One ridge solve of ``target`` on all nodes' features ``feats[d] (n, k_d)``: per node ``(W, mean)``."""
    sizes = np.cumsum([0] + [f.shape[1] for f in feats])
    w, mean = ridge(np.concatenate(feats, axis=1)[None], target, strength)
    return ([w[0][lo:hi] for lo, hi in zip(sizes[:-1], sizes[1:])],
            [mean[0][lo:hi] for lo, hi in zip(sizes[:-1], sizes[1:])])


def backfit(bases: Sequence[Basis], x: Float[np.ndarray, "n d"], y: Float[np.ndarray, "n o"],
            train: Bool[np.ndarray, " n"], *,
            ridge_strength: float = 1e-6, rounds: int = 3, z: float = 1.0, tolerance: float = 1e-5,
            search: bool = True, choice: Optional[Int[np.ndarray, " d"]] = None) -> Refit:
    """Backfit ``y (n, o) ~ bias + sum_d f_d(x_d)`` with one of ``bases`` per node of ``x (n, d)``.

    ``train (n,)`` is a boolean mask: fits (and shape searches) use the rows where it is True, choices
    the others. ``rounds`` passes over the nodes; the last one chooses by :func:`choose` (``z = 0``
    and ``tolerance = 0`` give the lowest held-out error). ``search`` turns the shape search of
    :mod:`kan.layers.selectable_spaces` on for the spaces that have one. A given ``choice (d,)`` fixes every
    node's space: then only the joint solve runs (``train`` may be all True). Spaces whose shape is
    trained by gradients (``Rational``, trainable ReLU-KAN) are refitted at their current shape.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    train = np.asarray(train, bool)
    xt, yt, yv = x[train], y[train], y[~train]
    d, num = x.shape[1], len(bases)
    bases = [searchable(b) if search else b for b in bases]
    shapes = np.array([shape_parameters(b) if search else 0 for b in bases])
    params = np.full((d, num), np.nan)
    lo, hi = nice_ranges(xt)
    ft, fv = map(list, zip(*(_split(node_features(b, x), train) for b in bases)))
    fixed = choice is not None
    choice = np.asarray(choice, int).copy() if fixed else np.zeros(d, int)
    pred_t, pred_v = np.zeros((d,) + yt.shape), np.zeros((d,) + yv.shape)
    heldout = np.full((d, num), np.nan)
    for round_ in range(0 if fixed else rounds):
        if round_ > 0:  # the additive model of the current spaces, solved jointly
            ws, ms = _joint([ft[choice[j]][:, j] for j in range(d)], yt, ridge_strength)
            for j in range(d):
                pred_t[j] = (ft[choice[j]][:, j] - ms[j]) @ ws[j]
                pred_v[j] = (fv[choice[j]][:, j] - ms[j]) @ ws[j]
        for j in range(d):
            rt = yt - yt.mean(0) - (pred_t.sum(0) - pred_t[j])
            rv = yv - yt.mean(0) - (pred_v.sum(0) - pred_v[j])
            fits, errors = [], []
            for c in range(num):
                if search and shape_parameters(bases[c]):
                    score = lambda f: _residual_sse(f, rt, ridge_strength)
                    bases[c] = shape_trials(bases[c], j, xt[:, j], score, float(lo[j]), float(hi[j]))
                    ft[c], fv[c] = _split(node_features(bases[c], x), train)
                w, mean = ridge(ft[c][None, :, j], rt, ridge_strength)
                fits.append((w[0], mean[0]))
                pv = (fv[c][:, j] - mean[0]) @ w[0] + rt.mean(0)
                errors.append(np.sum((rv - pv) ** 2, axis=1))
            errors = np.stack(errors)
            var = float(np.mean(np.sum((rv - rv.mean(0)) ** 2, axis=1)))
            heldout[j] = errors.mean(axis=1) / max(var, 1e-30)
            if round_ < rounds - 1:
                choice[j] = int(np.argmin(np.where(np.isfinite(errors.mean(1)), errors.mean(1), np.inf)))
            else:  # every space's forward path: (space, columns) fits compared by the rule
                paths = [forward_path(ft[c][:, j], rt, fv[c][:, j], rv, ridge_strength) for c in range(num)]
                owner = np.concatenate([np.full(len(p), c) for c, p in enumerate(paths)])
                count = np.concatenate([np.arange(1, len(p) + 1) + shapes[c] for c, p in enumerate(paths)])
                rows = np.concatenate(paths)
                choice[j] = owner[choose(rows, count, var, z, tolerance)]
                ok, _ = qualified(rows, var, z, tolerance)
                for c in range(num):
                    mine = ok & (owner == c)
                    params[j, c] = count[mine].min() if mine.any() else np.inf
            w, mean = fits[choice[j]]
            pred_t[j] = (ft[choice[j]][:, j] - mean) @ w
            pred_v[j] = (fv[choice[j]][:, j] - mean) @ w
    weights, means = _joint([ft[choice[j]][:, j] for j in range(d)], yt, ridge_strength)
    offset = sum(m @ w for m, w in zip(means, weights))
    return Refit(tuple(bases), choice, tuple(weights), yt.mean(0) - offset, heldout, params)
