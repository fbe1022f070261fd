"""Refitting and snapping the numeric constants of a formula to nice values.

Every float in the expression becomes a parameter. The parameters are refitted by Levenberg-Marquardt
(float64 numpy, central-difference derivatives) on the training data; then, greedily, each constant
(those closest to a nice value first) is fixed to a nice value (0, an integer, a simple fraction p/q
with q <= 6 and |p| <= 100, k*pi/q, k/(q*pi), k*pi^2/q, k/(q*pi^2), k*sqrt(pi)/q, k/(q*sqrt(pi)), k*sqrt(2*pi)/q,
k/(q*sqrt(2*pi)), k*sqrt(2)/q or k*sqrt(3)/q with |k| <= 12), the others are refitted, and
the snap is kept only if the RMSE on held-out data stays within ``rtol`` (relative) or ``atol`` (absolute) of the unsnapped formula's RMSE.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Optional, Sequence

import numpy as np
import sympy as sp

_MAX_DENOMINATOR = 6
_MAX_NUMERATOR = 100
_MAX_PI_NUMERATOR = 12  # k pi^e / q with |k| <= 12: the pi families would otherwise match almost anything
_PI_DENOMINATORS = (1, 2, 3, 4, 6)
# irrational factors of nice constants (k * factor / q): pi's powers, and the Gaussian's sqrt(2 pi)
_FACTORS = (sp.pi, 1 / sp.pi, sp.pi**2, 1 / sp.pi**2, sp.sqrt(sp.pi), 1 / sp.sqrt(sp.pi), sp.sqrt(2 * sp.pi),
            1 / sp.sqrt(2 * sp.pi), sp.sqrt(2), sp.sqrt(3))


def safe_lambdify(args, expr: sp.Expr, modules: str):
    """``sympy.lambdify`` that accepts expressions holding ``zoo`` (complex infinity, e.g. from a
    dead edge ``1/(0 x + 0)``): sympy's printers raise KeyError on it; it becomes nan instead."""
    return sp.lambdify(args, expr.xreplace({sp.zoo: sp.nan}), modules)


def nice_candidates(value: float, max_candidates: int = 3, window: float = 0.1) -> list[sp.Expr]:
    """Nice values near ``value`` (within ``window * max(|value|, 1)``), nearest first. Numerators
    are at most ``_MAX_NUMERATOR`` in size: a large integer is always close to a large float, but
    it is not a nice constant (``1561*(48723*pi**2*a - 4)/9432877129`` is a refitted float in disguise)."""
    cands: dict[sp.Expr, float] = {sp.Integer(0): abs(value)}
    for q in range(1, _MAX_DENOMINATOR + 1):
        p = int(round(value * q))
        if abs(p) <= _MAX_NUMERATOR:
            r = sp.Rational(p, q)
            cands.setdefault(r, abs(value - float(r)))
    for factor in _FACTORS:
        for q in _PI_DENOMINATORS:
            k = int(round(value * q / float(factor)))
            if k != 0 and abs(k) <= _MAX_PI_NUMERATOR:
                c = sp.Rational(k, q) * factor
                cands.setdefault(c, abs(value - float(c)))
    limit = window * max(abs(value), 1.0)
    near = sorted((dist, sp.count_ops(c), str(c), c) for c, dist in cands.items() if dist <= limit)
    return [c for *_, c in near[:max_candidates]]


def _trials(value: float) -> list[sp.Expr]:
    """Nice values to try for a constant: the six nearest, simplest first (the first that keeps the
    held-out error is kept: on noisy data the nearest nice value is often a contrived one, -0.4987 is
    nearer to ``-5 sqrt(2) / (8 sqrt(pi))`` than to ``-1/2``), then 0 (a term that other constants can
    absorb after refitting, e.g. a constant split over two terms)."""
    near = nice_candidates(value, max_candidates=6)
    cands = sorted(near, key=lambda c: (sp.count_ops(c), abs(float(c) - value)))
    return cands + ([sp.Integer(0)] if sp.Integer(0) not in cands else [])


def collapse_numbers(expr: sp.Expr) -> sp.Expr:
    """Evaluate every variable-free subexpression that holds a float (``0.35*sin(5) - 1/3``) to a
    single float, so constants split over several terms can snap together."""
    return expr.replace(lambda e: e.is_number and not e.is_Atom and e.has(sp.Float),
                        lambda e: sp.Float(complex(sp.N(e, 15)).real, 15))


@dataclasses.dataclass
class _Problem:
    """A formula with its floats replaced by parameters, lambdified with its Jacobian."""

    template: sp.Expr
    params: tuple[sp.Symbol, ...]
    values: np.ndarray
    variables: tuple[sp.Symbol, ...]

    def __post_init__(self):
        self._f = safe_lambdify((self.variables, self.params), self.template, "numpy")

    def predict(self, x: np.ndarray, values: np.ndarray) -> np.ndarray:
        cols = [x[:, i] for i in range(x.shape[1])]
        try:
            with np.errstate(all="ignore"):
                return np.broadcast_to(np.asarray(self._f(cols, values), np.float64), (x.shape[0],))
        except (OverflowError, ValueError, TypeError, ZeroDivisionError):
            return np.full(x.shape[0], np.nan)

    def jacobian(self, x: np.ndarray, values: np.ndarray, free: np.ndarray) -> np.ndarray:
        """Central differences in float64 (relative step 1e-6: errors ~1e-10, ample for
        Levenberg-Marquardt). Symbolic derivatives cost a sympy ``diff`` and a ``lambdify`` per
        constant, seconds for a formula with dozens of constants."""
        out = np.zeros((x.shape[0], int(free.sum())))
        with np.errstate(all="ignore"):  # an infinite constant gives an inf step: nan columns, rejected later
            return self._jacobian_columns(x, values, free, out)

    def _jacobian_columns(self, x: np.ndarray, values: np.ndarray, free: np.ndarray, out: np.ndarray) -> np.ndarray:
        for k, j in enumerate(np.flatnonzero(free)):
            h = 1e-6 * max(1.0, abs(float(values[j])))
            up, down = values.copy(), values.copy()
            up[j] += h
            down[j] -= h
            out[:, k] = (self.predict(x, up) - self.predict(x, down)) / (2 * h)
        return out


def _rmse(pred: np.ndarray, y: np.ndarray) -> float:
    with np.errstate(all="ignore"):  # an overflowing candidate scores inf, without a warning
        value = float(np.sqrt(np.mean((pred - y) ** 2)))
    return value if np.isfinite(value) else float("inf")


def refit(problem: _Problem, values: np.ndarray, free: np.ndarray, x: np.ndarray, y: np.ndarray,
          steps: int = 30) -> np.ndarray:
    """Levenberg-Marquardt on the free parameters (float64); returns the best values seen."""
    values = values.astype(np.float64).copy()
    if not free.any():
        return values
    lam = 1e-3
    loss = _rmse(problem.predict(x, values), y)
    for _ in range(steps):
        r = problem.predict(x, values) - y
        jac = problem.jacobian(x, values, free)
        if not (np.all(np.isfinite(jac)) and np.all(np.isfinite(r))):
            break
        jtj = jac.T @ jac
        g = jac.T @ r
        improved = False
        for _ in range(6):
            try:
                delta = np.linalg.solve(jtj + lam * (np.diag(np.diag(jtj)) + 1e-12 * np.eye(len(g))), -g)
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            trial = values.copy()
            trial[free] += delta
            new_loss = _rmse(problem.predict(x, trial), y)
            if new_loss < loss:
                values, improved = trial, loss - new_loss > 1e-12 * max(loss, 1e-30)
                loss, lam = new_loss, lam * 0.3
                break
            lam *= 10
        if not improved:
            break
    return values


def problem_of(expr: sp.Expr, variables: Sequence[sp.Symbol]) -> _Problem:
    """``expr`` with each float a parameter (smallest magnitude first), starting at its value."""
    floats = sorted(expr.atoms(sp.Float), key=lambda f: (abs(float(f)), float(f)))
    params = tuple(sp.Symbol(f"_c{i}") for i in range(len(floats)))
    return _Problem(expr.xreplace(dict(zip(floats, params))), params, np.array([float(f) for f in floats]),
                    tuple(variables))


def _refitted(expr: sp.Expr, variables: Sequence[sp.Symbol],
              train: tuple[np.ndarray, np.ndarray]) -> tuple[_Problem, np.ndarray]:
    problem = problem_of(expr, variables)
    x, y = (np.asarray(a, np.float64) for a in train)
    return problem, refit(problem, problem.values, np.ones(len(problem.params), bool), x, y.reshape(-1))


def refit_scored(expr: sp.Expr, variables: Sequence[sp.Symbol], train: tuple[np.ndarray, np.ndarray],
                 val: tuple[np.ndarray, np.ndarray]) -> tuple[sp.Expr, float]:
    """``expr`` with all its floats refitted on ``train = (x (n, d), y (n,))`` by Levenberg-Marquardt,
    and its RMSE on ``val`` (inf if it fails)."""
    problem, values = _refitted(expr, variables, train)
    vx, vy = (np.asarray(a, np.float64) for a in val)
    score = _rmse(problem.predict(vx, values), vy.reshape(-1))
    return problem.template.xreplace({p: sp.Float(float(v), 15) for p, v in zip(problem.params, values)}), score


def refit_expr(expr: sp.Expr, variables: Sequence[sp.Symbol], train: tuple[np.ndarray, np.ndarray]) -> sp.Expr:
    """``expr`` with all its floats refitted on ``train = (x (n, d), y (n,))`` by Levenberg-Marquardt."""
    if not expr.atoms(sp.Float):
        return expr
    return refit_scored(expr, variables, train, train)[0]


def refit_rmse(expr: sp.Expr, variables: Sequence[sp.Symbol], train: tuple[np.ndarray, np.ndarray],
               val: tuple[np.ndarray, np.ndarray]) -> float:
    """Validation RMSE of ``expr`` after refitting all its floats on ``train`` (inf if it fails)."""
    return refit_scored(expr, variables, train, val)[1]


@dataclasses.dataclass
class SnapResult:
    """The snapped expression, the held-out RMSE before / after snapping and which constants snapped."""

    expr: sp.Expr
    rmse_before: float
    rmse_after: float
    snapped: list[tuple[float, sp.Expr]]


def snap_constants(
    expr: sp.Expr,
    variables: Sequence[sp.Symbol],
    train: tuple[np.ndarray, np.ndarray],
    val: Optional[tuple[np.ndarray, np.ndarray]] = None,
    *,
    rtol: float = 0.1,
    atol: float = 1e-5,
    digits: int = 6,
    max_seconds: Optional[float] = None,
    _again: bool = True,
) -> SnapResult:
    """Refit the floats of ``expr`` on ``train = (x (n, d), y (n,))`` and snap them to nice values
    where the RMSE on ``val`` (default: train) stays <= ``max((1 + rtol) * before, atol * std(y))``.
    Unsnapped constants are rounded to ``digits`` significant digits.

    Cost: each trial value is a Levenberg-Marquardt refit whose Jacobian takes two evaluations per
    constant, so a formula with P constants costs ~P^2 refit evaluations (minutes for a wrong formula
    with dozens of constants). After ``max_seconds`` (None: no limit) no further values are tried: the
    constants snapped by then stay snapped, the rest keep their refitted values."""
    deadline = None if max_seconds is None else time.perf_counter() + max_seconds
    out_of_time = lambda: deadline is not None and time.perf_counter() > deadline
    variables = tuple(variables)
    x, y = (np.asarray(a, np.float64) for a in train)
    vx, vy = (x, y) if val is None else (np.asarray(a, np.float64) for a in val)
    y, vy = y.reshape(-1), vy.reshape(-1)
    if x.ndim != 2 or x.shape[1] != len(variables) or x.shape[0] != y.shape[0]:
        raise ValueError(f"snap_constants: x must be (n, {len(variables)}) with n = len(y); got {x.shape}, {y.shape}")
    problem = problem_of(expr, variables)
    if not problem.params:
        rm = _rmse(problem.predict(vx, problem.values), vy)
        return SnapResult(expr, rm, rm, [])
    params, template = problem.params, problem.template
    free = np.ones(len(params), bool)
    values = refit(problem, problem.values, free, x, y)
    before = _rmse(problem.predict(vx, values), vy)
    threshold = max((1.0 + rtol) * before, atol * float(np.std(vy) + 1e-30))
    exact: dict[int, sp.Expr] = {}
    order = []
    for j, v in enumerate(values):
        cands = _trials(float(v))
        order.append((abs(float(v) - float(cands[0])) / max(abs(float(v)), 1.0), j))
    for _, j in sorted(order):
        for cand in _trials(float(values[j])):
            if out_of_time():
                break
            trial_free = free.copy()
            trial_free[j] = False
            trial = values.copy()
            trial[j] = float(cand)
            trial = refit(problem, trial, trial_free, x, y)
            if _rmse(problem.predict(vx, trial), vy) <= threshold:
                free, values, exact[j] = trial_free, trial, cand
                break
    subs = {p: (exact[j] if j in exact else sp.Float(float(values[j]), 15)) for j, p in enumerate(params)}
    after = _rmse(problem.predict(vx, values), vy)
    snapped = [(float(problem.values[j]), exact[j]) for j in sorted(exact)]
    result = template.xreplace(subs)
    collapsed = collapse_numbers(result)
    if _again and collapsed != result and collapsed.atoms(sp.Float) and not out_of_time():
        left = None if deadline is None else deadline - time.perf_counter()
        second = snap_constants(collapsed, variables, train, val, rtol=rtol, atol=atol, digits=digits,
                                max_seconds=left, _again=False)
        if second.rmse_after <= threshold:
            return SnapResult(second.expr, before, second.rmse_after, snapped + second.snapped)
    rounded = {f: sp.Float(float(f), digits) for f in result.atoms(sp.Float)}
    return SnapResult(result.xreplace(rounded), before, after, snapped)
