"""Dropping redundant additive terms of a formula, by refitting what is left.

A network whose edges were snapped one at a time can carry a term that another term already covers
(``cos(b)**2`` beside a ``cos(eps*sin(b))`` that writes ``sin(b)**2``), or a small term that only
soaks up the edges' fitting error. With such a term in place Levenberg-Marquardt stops in a poor
minimum (seen on I.37.4, ``1 + a + 2 sqrt(a) cos b``: validation RMSE 4e-4 with the redundant term,
7e-8 once it is dropped and the rest refitted), and constant snapping then snaps the compensating
constants to the wrong nice values. Here each term is tried out, the rest refitted, and the drop is
kept when the validation RMSE stays within the same tolerance that constant snapping uses.
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

import numpy as np
import sympy as sp

from .constants import refit_scored


def additive_terms(expr: sp.Expr) -> tuple[sp.Expr, ...]:
    """The terms of ``expr`` with products distributed over sums at the top level only
    (``(a + b)*c -> a*c + b*c``; nothing inside functions or powers is expanded)."""
    return sp.Add.make_args(sp.expand_mul(expr, deep=False))


def drop_terms(
    expr: sp.Expr,
    variables: Sequence[sp.Symbol],
    train: tuple[np.ndarray, np.ndarray],
    val: Optional[tuple[np.ndarray, np.ndarray]] = None,
    *,
    rtol: float = 0.1,
    atol: float = 1e-5,
    max_seconds: Optional[float] = None,
) -> sp.Expr:
    """Greedy backward elimination over the additive terms of ``expr``: in each round every term is
    dropped in turn, the floats of what is left refitted on ``train = (x (n, d), y (n,))``, and the
    drop with the lowest RMSE on ``val`` (default: train) is kept when that RMSE is at most
    ``max((1 + rtol) * before, atol * std(y_val))``, ``before`` being the refitted ``expr``'s.
    Returns the refitted expression with the kept terms (``expr`` refitted if nothing drops). Stops
    after ``max_seconds`` (None: no limit) with the drops made so far; each trial costs one
    Levenberg-Marquardt refit."""
    deadline = None if max_seconds is None else time.perf_counter() + max_seconds
    variables = tuple(variables)
    x, y = (np.asarray(a, np.float64) for a in train)
    vx, vy = (x, y) if val is None else (np.asarray(a, np.float64) for a in val)
    y, vy = y.reshape(-1), vy.reshape(-1)
    current, before = refit_scored(expr, variables, (x, y), (vx, vy))
    terms = list(additive_terms(current))
    if len(terms) < 2:
        return current
    threshold = max((1.0 + rtol) * before, atol * float(np.std(vy) + 1e-30))
    while len(terms) > 1:
        best = None
        for k in range(len(terms)):
            if deadline is not None and time.perf_counter() > deadline:
                return current
            rest, score = refit_scored(sp.Add(*(terms[:k] + terms[k + 1:])), variables, (x, y), (vx, vy))
            if np.isfinite(score) and (best is None or score < best[0]):
                best = (score, rest)
        if best is None or best[0] > threshold:
            return current
        current = best[1]
        terms = list(additive_terms(current))
    return current
