"""The sparse-regression route: library features -> beam search per target transform -> candidates."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import sympy as sp

from ..constants import snap_constants
from ..formula import canonicalize, simplify
from .budget import Budget, TimeLimit, time_limit
from .features import build_library
from .pareto import Candidate, complexity, rmse
from .search import search_transformed

Split = tuple[np.ndarray, np.ndarray]


def regression_candidates(train: Split, val: Split, variables: Sequence[sp.Symbol], *,
                          families: Optional[frozenset[str]] = None, max_terms: int = 7, beam: int = 12,
                          keep: int = 60, source: str = "regression",
                          budget: Optional[Budget] = None) -> list[Candidate]:
    """The ``keep`` most promising (transform, support) formulas for ``y`` from ``train = (x (n, d),
    y (n,))``: the best few of each size and transform, with float constants (not yet snapped)."""
    (x, y), (vx, vy) = train, val
    library = build_library(np.concatenate([x, vx]), families, max_factors=3)
    found = search_transformed(library, (x, y), (vx, vy), max_terms=max_terms, beam=beam, families=families,
                               deadline=None if budget is None else budget.expired)
    found = [c for c in found if np.isfinite(c.val_rmse)]
    best_of_kind: dict[tuple, list] = {}
    for c in sorted(found, key=lambda c: c.val_rmse):
        best_of_kind.setdefault((c.transform.name, len(c.support) + len(c.denominator)), []).append(c)
    shortlist = [c for group in best_of_kind.values() for c in group[:2]]
    shortlist.sort(key=lambda c: c.val_rmse)
    out = []
    for c in shortlist[:keep]:
        expr = c.expr(library, variables)
        out.append(Candidate(expr, tuple(variables), c.val_rmse, f"{source}[{c.transform.name}]",
                             terms=len(c.support) + len(c.denominator)))
    return out


def snap_candidate(c: Candidate, train: Split, val: Split, budget: Optional[Budget] = None,
                   seconds: float = 5.0) -> Candidate:
    """``c`` with its constants refitted on ``train`` (Levenberg-Marquardt in the units of ``y``),
    snapped to nice values where ``val``'s RMSE allows (``symbolic.snap_constants``), terms whose
    constant snapped to 0 dropped, and simplified; within ``seconds`` (and the budget), else ``c``."""
    limit = seconds if budget is None else min(seconds, budget.left())
    if limit <= 0:
        return c
    try:
        with time_limit(limit):
            result = snap_constants(canonicalize(c.expr), c.variables, train, val)
            expr = simplify(result.expr)
    except (TimeLimit, ValueError, TypeError, ZeroDivisionError, OverflowError, RecursionError):
        return c
    snapped = Candidate(expr, c.variables, float("nan"), c.source, network=c.network, snapped=True)
    snapped.val_rmse = rmse(snapped.evaluate(val[0]), val[1])
    snapped.train_rmse = rmse(snapped.evaluate(train[0]), train[1])
    if not np.isfinite(snapped.val_rmse):
        return c
    if complexity(expr) > complexity(c.expr) and snapped.val_rmse >= c.val_rmse:
        return c
    return snapped
