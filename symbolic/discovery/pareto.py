"""Candidate formulas, their Pareto front (complexity vs validation error) and the documented choice rule."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

import numpy as np
import sympy as sp

from ..formula import evaluate_numpy


def complexity(expr: sp.Expr) -> int:
    """Nodes of the expression tree: each operation and symbol counts 1, an exact constant (``1/2``,
    ``sqrt(2)/(2 sqrt(pi))``) counts 1 whatever its form, a fitted float counts 2 (a number that
    names nothing costs more to state than a nice one, the minimum-description-length view)."""
    if expr.is_number:
        return 2 if expr.has(sp.Float) else 1
    args = expr.args
    if isinstance(expr, (sp.Mul, sp.Add)):  # the numeric factors (terms) of a product (sum): one constant
        numbers = [a for a in args if a.is_number]
        rest = [a for a in args if not a.is_number]
        const = 0 if not numbers else (2 if any(a.has(sp.Float) for a in numbers) else 1)
        return 1 + const + sum(complexity(a) for a in rest)
    return 1 + sum(complexity(arg) for arg in args)


@dataclasses.dataclass
class Candidate:
    """A formula found by one route (``source``), with its errors in the units of ``y``.

    ``network``: the surrogate or KAN it came from (None for the sparse-regression routes)."""

    expr: sp.Expr
    variables: tuple[sp.Symbol, ...]
    val_rmse: float
    source: str
    train_rmse: float = float("nan")
    test_rmse: float = float("nan")
    network: Any = None
    snapped: bool = False
    terms: int = 0  # features of a sparse-regression formula (0: not from that route)

    @property
    def complexity(self) -> int:
        """Size of the formula (:func:`complexity`)."""
        return complexity(self.expr)

    def latex(self) -> str:
        """LaTeX of the formula (sympy's ``latex``)."""
        return sp.latex(self.expr)

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """Float64 numpy evaluation ``x (n, d) -> (n,)``; nan where it is undefined."""
        return evaluate_numpy(self.expr, self.variables, x)

    def callable(self) -> Callable:
        """A jitted JAX callable ``(..., d) -> (...)`` of the formula (``symbolic.Formula``)."""
        from ..formula import Formula

        return Formula(self.expr, self.variables, rmse=self.val_rmse)

    def __str__(self) -> str:
        return str(self.expr)


def rmse(pred: np.ndarray, y: np.ndarray) -> float:
    """Root mean squared error (inf for a non-finite prediction)."""
    with np.errstate(all="ignore"):
        value = float(np.sqrt(np.mean((np.asarray(pred, np.float64) - np.asarray(y, np.float64)) ** 2)))
    return value if np.isfinite(value) else float("inf")


def pareto_front(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The candidates no other beats in both complexity and validation RMSE, simplest first (one per
    complexity: the most accurate)."""
    best: dict[int, Candidate] = {}
    for c in candidates:
        if np.isfinite(c.val_rmse) and (c.complexity not in best or c.val_rmse < best[c.complexity].val_rmse):
            best[c.complexity] = c
    front, lowest = [], float("inf")
    for k in sorted(best):
        if best[k].val_rmse < lowest:
            front.append(best[k])
            lowest = best[k].val_rmse
    return front


def error_threshold(front: Sequence[Candidate], scale: float, tolerance: float,
                    noise: Optional[float]) -> float:
    """The validation RMSE a formula may have and still be chosen: ``(1 + tolerance)`` times the best
    on the front, at least ``1e-6 * scale`` (float32 rounding of ``y``) and, when the noise level
    ``noise`` (standard deviation of y's noise) is known, at least ``(1 + tolerance) * noise``."""
    best = min(c.val_rmse for c in front)
    out = max((1.0 + tolerance) * best, 1e-6 * scale)
    if noise is not None:
        out = max(out, (1.0 + tolerance) * float(noise))
    return out


def choose(front: Sequence[Candidate], scale: float, tolerance: float = 0.1,
           noise: Optional[float] = None) -> Candidate:
    """The simplest formula on the front whose validation RMSE is within :func:`error_threshold`."""
    if not front:
        raise ValueError("choose: no candidate formula with a finite validation error")
    limit = error_threshold(front, scale, tolerance, noise)
    return min((c for c in front if c.val_rmse <= limit), key=lambda c: (c.complexity, c.val_rmse))
