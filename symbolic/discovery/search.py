"""Sparse regression of a transformed target on the feature library, by beam search.

For each target transform ``t = T(y)`` the search grows supports (sets of features) one feature at a time:
from every support in the beam it adds the features that shrink the least-squares residual most
(orthogonalised against the support, as in orthogonal matching pursuit) and keeps the ``beam`` best
supports of each size. Each support is fitted by least squares on the training rows and scored by the
RMSE of ``T^{-1}(fit)`` on the validation rows in the units of ``y``. The rational form
``y = P(x) / (1 + Q(x))`` is searched the same way, linearised as ``y = P(x) - y Q(x)``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import numpy as np
import sympy as sp

from .features import FeatureLibrary
from .transforms import Transform, applicable

RATIONAL = Transform("P/(1+Q)", "1/x", lambda y: y, lambda t: t, lambda e: e, 2)


@dataclasses.dataclass
class LinearCandidate:
    """``T^{-1}(sum_k coef_k * feature_k)`` (``denominator``: the Q features of the rational form)."""

    transform: Transform
    support: tuple[int, ...]
    coef: np.ndarray
    val_rmse: float
    complexity: float
    denominator: tuple[int, ...] = ()
    den_coef: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))

    def expr(self, library: FeatureLibrary, variables: Sequence[sp.Expr]) -> sp.Expr:
        num = sum((sp.Float(float(c), 15) * library.features[j].expr(variables)
                   for j, c in zip(self.support, self.coef)), sp.Integer(0))
        if self.denominator:
            den = 1 + sum((sp.Float(float(c), 15) * library.features[j].expr(variables)
                           for j, c in zip(self.denominator, self.den_coef)), sp.Integer(0))
            return num / den
        return self.transform.inverse_sym(num)


def beam_supports(columns: np.ndarray, target: np.ndarray, max_terms: int, beam: int,
                  start: tuple[int, ...] = (),
                  rank: Optional[Callable[[tuple[int, ...], np.ndarray], float]] = None,
                  allowed: Optional[np.ndarray] = None) -> list[tuple[int, ...]]:
    """Supports (sorted column indices) of sizes ``len(start)+1 .. max_terms`` found by beam search on
    ``columns (n, p)`` (finite) for ``target (n,)``; ``start`` is in every support. From each support
    the ``2 * beam`` features with the largest residual reduction are proposed; proposals are ranked by
    ``rank(support, residual)`` (default: the residual norm) and the ``beam`` best kept. Each step costs
    two matrix-vector products per support (the residual's correlations and the norms of the columns
    orthogonalised against the support, updated one basis vector at a time). ``allowed (p,)``: the
    columns that may be added (default all); the first two are then chosen greedily, not from all pairs."""
    n, p = columns.shape
    norms0 = np.linalg.norm(columns, axis=0)
    usable = norms0 > 0
    if allowed is not None:
        usable = usable & allowed
    cols = columns / np.where(usable, norms0, 1.0)
    rank = rank or (lambda support, resid: float(resid @ resid))
    basis, resid, left = np.zeros((n, 0)), target.astype(np.float64).copy(), np.ones(p)
    for j in start:
        q = cols[:, j] - basis @ (basis.T @ cols[:, j])
        nq = np.linalg.norm(q)
        if nq > 1e-10:
            q = q / nq
            basis, resid = np.column_stack([basis, q]), resid - q * (q @ resid)
            left = left - (q @ cols) ** 2
    states = [(tuple(sorted(start)), basis, resid, left)]
    found: list[tuple[int, ...]] = []
    total = float(target @ target) + 1e-300
    if max_terms >= len(start) + 2 and allowed is None:
        states, found = _best_pairs(cols, usable, states[0], beam, rank)
    for _ in range(len(start) + 2 if found else len(start), max_terms):
        proposals: dict[tuple[int, ...], tuple] = {}
        for support, basis, resid, left in states:
            ok = usable & (left > 1e-10)
            ok[list(support)] = False
            gain = np.where(ok, (cols.T @ resid) ** 2 / np.where(ok, left, 1.0), -1.0)
            top = np.argpartition(-gain, min(2 * beam, p - 1))[: 2 * beam]
            for j in top:
                new = tuple(sorted(support + (int(j),)))
                if gain[j] <= 0 or new in proposals:
                    continue
                q = cols[:, j] - basis @ (basis.T @ cols[:, j])
                q = q / np.linalg.norm(q)
                new_resid = resid - q * (q @ resid)
                proposals[new] = (rank(new, new_resid), basis, new_resid, left, q)
        if not proposals:
            break
        states = []
        for new, (_, basis, resid, left, q) in sorted(proposals.items(), key=lambda kv: kv[1][0])[:beam]:
            states.append((new, np.column_stack([basis, q]), resid, left - (q @ cols) ** 2))
            found.append(new)
        if min(float(s[2] @ s[2]) for s in states) < 1e-26 * total:
            break
    return found


def _best_pairs(cols: np.ndarray, usable: np.ndarray, state: tuple, beam: int, rank) -> tuple[list, list]:
    """Exhaustive best subsets of one and two features added to ``state``: the two-feature gain of
    every pair from the Gram matrix of the columns orthogonalised against the support. The greedy
    first step is where a single product feature that mimics a sum (``exp(-b) cos(a)`` for
    ``-a^2/(2 b^2) - log b``) takes the beam; searching all pairs avoids it."""
    support, basis, resid, left = state
    proj = cols - basis @ (basis.T @ cols) if basis.shape[1] else cols
    norm = np.sqrt(np.maximum(left, 0.0))
    ok = usable & (norm > 1e-5)
    ok[list(support)] = False
    idx = np.flatnonzero(ok)
    if idx.size < 2:
        return [state], []
    unit = proj[:, idx] / norm[idx]
    corr = unit.T @ resid
    gram = unit.T @ unit
    with np.errstate(all="ignore"):
        denom = 1.0 - gram**2
        gain = (corr[:, None] ** 2 + corr[None, :] ** 2 - 2 * gram * corr[:, None] * corr[None, :]) / denom
    gain[~np.isfinite(gain) | (denom < 1e-8)] = -1.0
    gain[np.tril_indices(idx.size)] = -1.0
    flat = np.argpartition(-gain.ravel(), min(4 * beam, gain.size - 1))[: 4 * beam]
    singles = np.argsort(-(corr**2))[: 2 * beam]
    scored = []
    for a, b in [divmod(int(f), idx.size) for f in flat] + [(int(a), None) for a in singles]:
        new_basis, new_resid, new_left = basis, resid, left
        for k in (a,) if b is None else (a, b):
            q = cols[:, idx[k]] - new_basis @ (new_basis.T @ cols[:, idx[k]])
            nq = np.linalg.norm(q)
            if nq < 1e-10:
                break
            q = q / nq
            new_basis, new_resid = np.column_stack([new_basis, q]), new_resid - q * (q @ new_resid)
            new_left = new_left - (q @ cols) ** 2
        else:
            new = tuple(sorted(support + tuple(int(idx[k]) for k in ((a,) if b is None else (a, b)))))
            scored.append((rank(new, new_resid), new, new_basis, new_resid, new_left))
    scored.sort(key=lambda item: item[0])
    pairs = [item for item in scored if len(item[1]) == len(support) + 2][:beam]
    ones = [item for item in scored if len(item[1]) == len(support) + 1][:beam]
    return [item[1:] for item in pairs], [item[1] for item in ones + pairs]


def _rmse(pred: np.ndarray, y: np.ndarray) -> float:
    with np.errstate(all="ignore"):
        value = float(np.sqrt(np.mean((pred - y) ** 2)))
    return value if np.isfinite(value) else float("inf")


def _lstsq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    scale = np.linalg.norm(a, axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    coef, *_ = np.linalg.lstsq(a / scale, b, rcond=None)
    return coef / scale


def search_transformed(library: FeatureLibrary, train: tuple[np.ndarray, np.ndarray],
                       val: tuple[np.ndarray, np.ndarray], *, max_terms: int = 7, beam: int = 12,
                       families: Optional[frozenset[str]] = None, rational: bool = True,
                       features: Optional[tuple[np.ndarray, np.ndarray]] = None,
                       deadline: Optional[Callable[[], bool]] = None) -> list[LinearCandidate]:
    """Every (transform, support) candidate for ``y`` from ``train = (x (n, d), y (n,))``, scored on
    ``val``. Each transform is searched twice: over the single-variable features only (where a beam
    finds sums of one-variable terms and power laws ``log y = sum p_i log x_i`` without products
    crowding them out) and over the whole library. ``features``: the library evaluated on train and
    val, if already computed. ``deadline()``: True when the time is up (checked before each
    transform; what was found by then is returned)."""
    (x, y), (vx, vy) = train, val
    deadline = deadline or (lambda: False)
    f_train, f_val = features if features is not None else (library.evaluate(x), library.evaluate(vx))
    finite = np.all(np.isfinite(f_train), axis=0) & np.all(np.isfinite(f_val), axis=0)
    singles = np.array([len(f.factors) <= 1 for f in library.features])
    out: list[LinearCandidate] = []
    seen: set = set()
    for mask in (finite & singles, finite):
        cols = np.flatnonzero(mask)
        ft, fv = f_train[:, cols], f_val[:, cols]
        comp = library.complexities()[cols]
        const = tuple(k for k, j in enumerate(cols) if not library.features[j].factors)
        for tr, t in applicable(y, families):
            if deadline():
                return out

            def rank(support, resid, tr=tr, t=t):
                with np.errstate(all="ignore"):
                    return _rmse(tr.inverse(t - resid), y)

            for support in beam_supports(ft, t, max_terms, beam, const, rank):
                key = (tr.name, tuple(int(cols[k]) for k in support))
                if key in seen:
                    continue
                seen.add(key)
                s = list(support)
                coef = _lstsq(ft[:, s], t)
                with np.errstate(all="ignore"):
                    pred = tr.inverse(fv[:, s] @ coef)
                out.append(LinearCandidate(tr, key[1], coef, _rmse(pred, vy),
                                           tr.complexity + float(comp[s].sum()) + len(s)))
        if rational and (families is None or "1/x" in families) and not deadline():
            where = {int(j): k for k, j in enumerate(cols)}
            plain = sorted((c for c in out if c.transform.name == "y" and len(c.support) <= max_terms - 1
                            and all(j in where for j in c.support)), key=lambda c: c.val_rmse)
            by_size: dict[int, list] = {}
            for c in plain:  # the best numerators of each size: small ones are often the right ones
                by_size.setdefault(len(c.support), []).append(c)
            numerators = [tuple(sorted(where[j] for j in c.support))
                          for group in by_size.values() for c in group[:3]]
            out += _search_rational(ft, fv, comp, cols, numerators, y, vy, max_terms, beam, deadline)
    return out


def _search_rational(ft, fv, comp, cols, numerators, y, vy, max_terms, beam, deadline) -> list[LinearCandidate]:
    """``y = P - y Q`` with Q free of the constant. The numerators P are the best supports of the
    untransformed search; Q features are added to each by beam search (all coefficients refitted).
    Searching P and Q together lets a nearly constant Q feature take the beam (``y Q`` is then nearly
    ``y``: a degenerate fit with a small linear residual and a useless ``P / (1 + Q)``)."""
    q_cols = [k for k in range(ft.shape[1]) if 0 < comp[k] <= 5]  # not the constant (complexity 0)
    p = ft.shape[1]
    aug = np.column_stack([ft, -y[:, None] * ft[:, q_cols]])
    allowed = np.zeros(aug.shape[1], bool)
    allowed[p:] = True

    def split(support):
        num = [k for k in support if k < p]
        den = [q_cols[k - p] for k in support if k >= p]
        coef = _lstsq(aug[:, list(support)], y)
        return num, den, coef[: len(num)], coef[len(num):]

    def predict(f, support):
        num, den, cn, cd = split(support)
        with np.errstate(all="ignore"):
            return (f[:, num] @ cn) / (1 + f[:, den] @ cd)

    out, seen = [], set()
    for numerator in numerators:
        if deadline():
            break
        extra = max(1, min(3, max_terms + 1 - len(numerator)))
        for support in beam_supports(aug, y, len(numerator) + extra, beam // 2, numerator,
                                     lambda support, resid: _rmse(predict(ft, support), y), allowed):
            if support in seen:
                continue
            seen.add(support)
            num, den, cn, cd = split(support)
            out.append(LinearCandidate(RATIONAL, tuple(int(cols[k]) for k in num), cn,
                                       _rmse(predict(fv, support), vy),
                                       RATIONAL.complexity + float(comp[num].sum() + comp[den].sum())
                                       + len(num) + len(den), tuple(int(cols[k]) for k in den), cd))
    return out

