"""The recursive solver: sparse regression first; where no formula fits, a surrogate proposes structure
(irrelevant variables, combinations, separability) and the smaller problems are solved the same way.

Hypotheses come from the surrogate; every formula is scored on the real validation rows, so a wrong
hypothesis costs time, never a wrong answer (a formula from a split is refitted on the real data).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from typing import Optional, Sequence

import numpy as np
import sympy as sp

from ..constants import refit_expr
from ..formula import evaluate_numpy
from .budget import Budget
from .pareto import Candidate, pareto_front, rmse
from .regression import regression_candidates
from .surrogate import Surrogate, fit_surrogate, hypothesis_tests

Split = tuple[np.ndarray, np.ndarray]
_FIT_SECONDS: list[float] = []  # wall times of this process's surrogate fits


def surrogate_seconds() -> float:
    """A guess of the next surrogate fit's wall time, so that none starts that would overrun the budget:
    1.5x the last fit in this process; before the first, 25 s (compiling on 2 busy cores) or 8 s when
    the persistent compilation cache already holds programs."""
    if _FIT_SECONDS:
        return 1.5 * _FIT_SECONDS[-1]
    from kan.compile_cache import cache_is_warm

    return 8.0 if cache_is_warm() else 25.0


@dataclasses.dataclass
class Settings:
    """Knobs of the solver (defaults tuned on the package's own made-up laws, not on a benchmark)."""

    families: Optional[frozenset[str]] = None
    max_terms: int = 7
    beam: int = 12
    exact: float = 1e-5           # relative validation RMSE under which a formula counts as a fit
    noise: Optional[float] = None  # known noise standard deviation of y
    max_depth: int = 2
    sparse_terms: int = 4
    combination_tol: float = 0.02
    separability_tol: float = 0.05
    dependence_tol: float = 1e-4
    seed: int = 0


def _fits(cands: Sequence[Candidate], scale: float, settings: Settings) -> bool:
    """Whether a sparse formula (at most ``settings.sparse_terms`` features) fits within the exactness
    limit: then no structure is looked for. A fit that needs many features may be a series standing in
    for one function outside the library (``-log(1 + x)`` as five smooth terms), so it does not stop
    the search."""
    limit = settings.exact * scale if settings.noise is None else max(settings.exact * scale, 1.1 * settings.noise)
    return any(c.val_rmse <= limit and 0 < c.terms <= settings.sparse_terms for c in cands)


def solve(train: Split, val: Split, variables: Sequence[sp.Expr], budget: Budget, settings: Settings,
          depth: int = 0, label: str = "") -> list[Candidate]:
    """Candidates for ``y`` from ``train = (x (n, d), y (n,))`` in ``variables`` (one per column)."""
    variables = tuple(variables)
    scale = float(np.std(val[1])) + 1e-30
    with budget.stage("regression"):
        cands = regression_candidates(train, val, variables, families=settings.families,
                                      max_terms=settings.max_terms, beam=settings.beam,
                                      source=label + "regression", budget=budget)
    if _fits(cands, scale, settings) or depth >= settings.max_depth or budget.left() < surrogate_seconds():
        return cands
    with budget.stage("surrogate"):
        t0 = time.perf_counter()
        surrogate = fit_surrogate(train, val, seed=settings.seed)
        _FIT_SECONDS.append(time.perf_counter() - t0)
        hyp = hypothesis_tests(surrogate, val[0][:256], val[1][:256])
    cands += _drop_irrelevant(train, val, variables, hyp, budget, settings, depth, label)
    cands += _combinations(train, val, variables, hyp, budget, settings, depth, label)
    cands += _separable(train, val, variables, hyp, surrogate, budget, settings, depth, label)
    for c in cands:  # formulas whose structure the surrogate proposed keep it
        if c.network is None and not c.source.startswith(label + "regression"):
            c.network = surrogate
    return cands


def _drop_irrelevant(train, val, variables, hyp, budget, settings, depth, label) -> list[Candidate]:
    keep = [i for i in range(len(variables)) if hyp.dependence[i] >= settings.dependence_tol]
    if len(keep) in (0, len(variables)) or budget.left() < 3.0:
        return []
    sub = solve((train[0][:, keep], train[1]), (val[0][:, keep], val[1]), [variables[i] for i in keep],
                budget, settings, depth + 1, label + "drop/")
    return [Candidate(c.expr, tuple(variables), rmse(evaluate_numpy(c.expr, variables, val[0]), val[1]), c.source)
            for c in sub]


_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b}


def _substitute(x: np.ndarray, combos: Sequence[tuple[int, int, str]]) -> Optional[np.ndarray]:
    """``x`` with the columns of each combination ``(i, j, op)`` replaced by ``x_i op x_j`` (appended)."""
    used = [k for i, j, _ in combos for k in (i, j)]
    with np.errstate(all="ignore"):
        new = [_OPS[op](x[:, i], x[:, j]) for i, j, op in combos]
    out = np.column_stack([np.delete(x, used, axis=1)] + new)
    return out if np.all(np.isfinite(out)) else None


def _disjoint(ranked: Sequence[tuple[float, tuple[int, int, str]]]) -> list[tuple[int, int, str]]:
    """The best-supported combinations that share no variable, greedily."""
    taken: set[int] = set()
    out = []
    for _, (i, j, op) in ranked:
        if i not in taken and j not in taken:
            out.append((i, j, op))
            taken |= {i, j}
    return out


def _combinations(train, val, variables, hyp, budget, settings, depth, label) -> list[Candidate]:
    """Solve for y in fewer variables on the real data, substituting ``u = x_i op x_j``: all passing
    combinations that share no variable at once (``sqrt((a-b)^2 + (c-d)^2)`` needs both), and the
    single best one alone."""
    ranked = sorted((stat, key) for key, stat in hyp.combination.items() if stat < settings.combination_tol)
    if not ranked:
        return []
    tries = [_disjoint(ranked)]
    if len(tries[0]) > 1:
        tries.append([ranked[0][1]])
    out = []
    for combos in tries:
        if budget.left() < 2.0:
            break
        xt, xv = _substitute(train[0], combos), _substitute(val[0], combos)
        if xt is None or xv is None:
            continue
        used = {k for i, j, _ in combos for k in (i, j)}
        dummies = [sp.Dummy(f"u{n}") for n in range(len(combos))]
        rest = [v for k, v in enumerate(variables) if k not in used]
        name = ",".join(f"{variables[i]}{op}{variables[j]}" for i, j, op in combos)
        sub = solve((xt, train[1]), (xv, val[1]), rest + dummies, budget, settings, depth + 1, f"{label}[{name}]/")
        back = {u: _OPS[op](variables[i], variables[j]) for u, (i, j, op) in zip(dummies, combos)}
        out += [Candidate(c.expr.xreplace(back), tuple(variables), c.val_rmse, c.source) for c in sub]
    return out


def _sub_data(surrogate: Surrogate, x: np.ndarray, group: Sequence[int], anchor: np.ndarray) -> Split:
    pts = np.tile(anchor, (x.shape[0], 1))
    pts[:, list(group)] = x[:, list(group)]
    return x[:, list(group)], surrogate(pts)


def _best_few(cands: Sequence[Candidate], count: int = 3) -> list[Candidate]:
    """The ``count`` simplest formulas on the front within 3x of its best validation RMSE: a side of a
    split is fitted to surrogate data, whose error (~1e-3) lets an overfitted formula edge out the
    true one."""
    front = pareto_front(cands)
    if not front:
        return []
    best = min(c.val_rmse for c in front)
    return [c for c in front if c.val_rmse <= 3 * best][:count]


def _separable(train, val, variables, hyp, surrogate, budget, settings, depth, label) -> list[Candidate]:
    """For the best additive and the best multiplicative split passing the test: solve each side on
    surrogate data (the other side held at the median point), combine the best few of each, refit all
    constants on the real training rows and score on the real validation rows."""
    out = []
    anchor = np.median(train[0], axis=0)
    f_anchor = float(surrogate(anchor[None, :])[0])
    for kind, stats in (("+", hyp.additive), ("*", hyp.multiplicative)):
        passing = sorted((stat, split) for split, stat in stats.items() if stat < settings.separability_tol)
        if not passing or budget.left() < 3.0 or (kind == "*" and abs(f_anchor) < 1e-12):
            continue
        groups = passing[0][1]
        sides = []
        for g, group in enumerate(groups):
            sub_train = _sub_data(surrogate, train[0], group, anchor)
            sub_val = _sub_data(surrogate, val[0], group, anchor)
            sub = solve(sub_train, sub_val, [variables[i] for i in group], budget, settings, depth + 1,
                        f"{label}split{kind}{g}/")
            sides.append(_best_few(sub))
        for left, right in itertools.product(*sides):
            if budget.left() < 1.0:
                break
            if kind == "+":
                expr = left.expr + right.expr + sp.Float(-f_anchor, 15)
            else:
                expr = sp.Float(1.0 / f_anchor, 15) * left.expr * right.expr
            try:
                expr = refit_expr(expr, variables, train)
            except (ValueError, TypeError, OverflowError, ZeroDivisionError):
                continue
            c = Candidate(expr, tuple(variables), 0.0, f"{label}split{kind}({left.source} | {right.source})")
            c.val_rmse = rmse(c.evaluate(val[0]), val[1])
            out.append(c)
    return out
