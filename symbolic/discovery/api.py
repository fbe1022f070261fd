"""``symbolic.discover(x, y)``: formulas from data alone, and the scikit-learn style ``SymbolicRegressor``."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import sympy as sp
from jaxtyping import Float

from ..library import as_library
from .budget import Budget
from .data import check_xy, make_variables, split_rows
from .engine import Settings, solve
from .portfolio import portfolio_candidates
from .pareto import Candidate, choose, error_threshold, pareto_front, rmse
from .regression import snap_candidate

_SEARCH_ROWS = 1500  # rows the structure search works on; constants are refitted on all training rows
_SEARCH_SHARE = 0.75  # of the budget for finding candidates; the rest is for snapping their constants


@dataclasses.dataclass
class DiscoveryResult:
    """The outcome for one output column.

    ``front``: the Pareto front (complexity vs validation RMSE), simplest first; ``best``: the chosen
    formula (:func:`symbolic.discover.pareto.choose`: the simplest on the front whose validation RMSE
    is within ``(1 + tolerance)`` of the front's best, or of the noise level when given);
    ``threshold``: that RMSE limit; ``seconds`` and ``stages``: wall time in all and per stage."""

    front: list[Candidate]
    best: Candidate
    variables: tuple[sp.Symbol, ...]
    threshold: float
    seconds: float
    stages: dict[str, float]

    @property
    def expr(self) -> sp.Expr:
        """The chosen formula (sympy)."""
        return self.best.expr

    def latex(self) -> str:
        """LaTeX of the chosen formula."""
        return self.best.latex()

    def predict(self, x: Float[np.ndarray, "n d"]) -> Float[np.ndarray, "n"]:
        """The chosen formula at ``x (n, d)`` (float64 numpy)."""
        return self.best.evaluate(np.asarray(x, np.float64).reshape(-1, len(self.variables)))

    def table(self) -> str:
        """The front as a text table: complexity, validation / test RMSE, source, formula."""
        lines = [f"{'cplx':>4}  {'val RMSE':>9}  {'test RMSE':>9}  formula"]
        for c in self.front:
            mark = "*" if c is self.best else " "
            lines.append(f"{c.complexity:>4}{mark} {c.val_rmse:9.2e}  {c.test_rmse:9.2e}  {c.expr}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return str(self.best.expr)


def discover(
    x: Float[np.ndarray, "n d"],
    y: Float[np.ndarray, "n *m"],
    *,
    time_budget: float = 60.0,
    seed: int = 0,
    variables: Optional[Sequence[str]] = None,
    library: Optional[Iterable[str]] = None,
    noise: Optional[float] = None,
    tolerance: float = 0.1,
    compile_cache: bool = True,
) -> "DiscoveryResult | list[DiscoveryResult]":
    """Find a formula ``y = f(x)`` from data alone; nothing about the answer is assumed.

    x: ``(n, d)`` inputs; y: ``(n,)`` or ``(n, m)`` (one result per output column, the budget shared).
    The rows are split 60/20/20 (train / validation / test, shuffled with ``seed``); every choice is
    made on the validation rows; the test rows only report the front's errors.

    Routes, in order, each within the time budget:

    1. sparse regression: the target, or a transform of it (``log y``, ``1/y``, ``y^2``, ``sqrt y``,
       ``sin y``, ``tan y``, ``atanh y``, ``exp y``), as a sparse sum of library features (unary
       functions of one variable and products of two), found by beam search; also ``P / (1 + Q)``.
       Seconds; numpy only, nothing compiles.
    2. where no formula fits (relative validation RMSE above 1e-5, or above the noise level): a KAN
       surrogate of f is fitted (most of the time of this route is XLA compiling it once per width,
       JAX's persistent compilation cache makes a second run warm), its derivatives propose structure
       (irrelevant variables, dependence through ``x_i +-*/ x_j``, additive or multiplicative
       separability), and the smaller problems are solved recursively; each combined formula is
       refitted and scored on the real data.
    3. where still nothing fits: a portfolio of small generic KANs (``[d, 1, 1]``, the same with a
       multiplication node, ``[d, 2, 1]``), all random starts of a shape trained as one vmapped batch,
       pruned by masks, snapped edge by edge (:mod:`symbolic.discovery.portfolio`); each shape compiles
       once (the persistent cache keeps it) and starts only if the time left exceeds a guess of its cost.
    4. the front's constants are refitted (Levenberg-Marquardt) and snapped to nice values where the
       validation error allows (``symbolic.snap_constants``), under a per-formula time limit.

    library: names of ``symbolic.BUILTIN_NAMES`` allowed in the formula (default: all).
    noise: the standard deviation of y's noise, if known: any formula within it may be chosen.
    tolerance: relative slack of the choice rule (see :class:`DiscoveryResult`).
    Returns a :class:`DiscoveryResult` (a list of them for several outputs).
    """
    x, y = check_xy(x, y)
    if not tolerance >= 0:
        raise ValueError(f"discover: tolerance must be >= 0, got {tolerance}")
    if noise is not None and not noise >= 0:
        raise ValueError(f"discover: noise must be >= 0 (a standard deviation), got {noise}")
    if compile_cache:
        from kan.compile_cache import enable_compile_cache

        enable_compile_cache()
    families = None if library is None else frozenset(as_library(list(library)).names)
    symbols = make_variables(x, variables)
    results = []
    for o in range(y.shape[1]):
        budget = Budget(time_budget / y.shape[1])
        results.append(_discover_one(x, y[:, o], symbols, budget, Settings(families=families, noise=noise,
                                                                           seed=seed), seed, tolerance))
    return results[0] if y.shape[1] == 1 else results


def _discover_one(x: np.ndarray, y: np.ndarray, symbols, budget: Budget, settings: Settings, seed: int,
                  tolerance: float) -> DiscoveryResult:
    tr, va, te = split_rows(x.shape[0], seed)
    train, val, test = (x[tr], y[tr]), (x[va], y[va]), (x[te], y[te])
    search_train = (train[0][:_SEARCH_ROWS], train[1][:_SEARCH_ROWS])
    search = budget.part(_SEARCH_SHARE)
    cands = solve(search_train, val, symbols, search, settings)
    scale = float(np.std(val[1])) + 1e-30
    limit = settings.exact * scale if settings.noise is None else max(settings.exact * scale, 1.1 * settings.noise)
    if not any(c.val_rmse <= limit for c in cands):
        with budget.stage("portfolio"):
            cands += portfolio_candidates(search_train, val, symbols, search, seed=seed, good_enough=limit)
    with budget.stage("snapping"):
        cands = _snap_front(cands, train, val, budget, scale, tolerance, settings.noise)
    front = pareto_front(cands)
    for c in front:
        c.test_rmse = rmse(c.evaluate(test[0]), test[1])
        c.train_rmse = rmse(c.evaluate(train[0]), train[1])
    best = choose(front, scale, tolerance, settings.noise)
    return DiscoveryResult(front, best, tuple(symbols), error_threshold(front, scale, tolerance, settings.noise),
                           budget.elapsed(), dict(budget.stages))


def _snap_front(cands: list[Candidate], train, val, budget: Budget, scale: float, tolerance: float,
                noise: Optional[float]) -> list[Candidate]:
    """Snap the front's formulas, most accurate first, then those just outside the choice threshold
    (a snapped formula can be simpler and as accurate); each within its share of the time left."""
    front = pareto_front(cands)
    if not front:
        raise ValueError("discover: no candidate formula has a finite validation error")
    limit = error_threshold(front, scale, tolerance, noise)
    accurate = sorted(front, key=lambda c: c.val_rmse)[:3]
    # formulas within 100x of the limit can become exact once their constants snap; simplest first
    close = sorted((c for c in cands if c.val_rmse <= 100 * limit), key=lambda c: (c.complexity, c.val_rmse))
    todo = []
    for c in accurate + close:
        if all(c is not t for t in todo):
            todo.append(c)
    todo = todo[:16]
    snapped = []
    for k, c in enumerate(todo):
        if budget.left() <= 0.2:
            break
        seconds = min(3.0, max(0.3, budget.left() / (len(todo) - k)))
        snapped.append(snap_candidate(c, train, val, budget, seconds=seconds))
    return cands + [c for c in snapped if c.snapped]


class SymbolicRegressor:
    """scikit-learn style wrapper of :func:`discover`: ``fit(x, y)``, ``predict(x)``, ``formula_``
    (sympy, a list for several outputs), ``result_`` (the :class:`DiscoveryResult`)."""

    def __init__(self, time_budget: float = 60.0, seed: int = 0, variables: Optional[Sequence[str]] = None,
                 library: Optional[Iterable[str]] = None, noise: Optional[float] = None, tolerance: float = 0.1):
        self.time_budget, self.seed, self.variables = time_budget, seed, variables
        self.library, self.noise, self.tolerance = library, noise, tolerance

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's arguments (scikit-learn's estimator protocol)."""
        return {k: getattr(self, k) for k in ("time_budget", "seed", "variables", "library", "noise", "tolerance")}

    def set_params(self, **params) -> "SymbolicRegressor":
        """Change constructor arguments by name; unknown names raise ValueError."""
        for k, v in params.items():
            if k not in self.get_params():
                raise ValueError(f"SymbolicRegressor: unknown parameter {k!r}")
            setattr(self, k, v)
        return self

    def fit(self, x: Float[np.ndarray, "n d"], y: Float[np.ndarray, "n *m"]) -> "SymbolicRegressor":
        """Run :func:`discover` on ``x (n, d)``, ``y (n,)`` or ``(n, m)``; returns ``self``."""
        self.result_ = discover(x, y, **self.get_params())
        results = self.result_ if isinstance(self.result_, list) else [self.result_]
        self.formula_ = [r.expr for r in results] if isinstance(self.result_, list) else results[0].expr
        self.n_features_in_ = len(results[0].variables)
        return self

    def predict(self, x: Float[np.ndarray, "n d"]) -> np.ndarray:
        """The chosen formula(s) at ``x (n, d)``: ``(n,)``, or ``(n, m)`` for several outputs."""
        if not hasattr(self, "result_"):
            raise RuntimeError("SymbolicRegressor: call fit before predict")
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features_in_:
            raise ValueError(f"SymbolicRegressor.predict: x must have shape (n, {self.n_features_in_}), got {x.shape}")
        if isinstance(self.result_, list):
            return np.stack([r.predict(x) for r in self.result_], axis=1)
        return self.result_.predict(x)
