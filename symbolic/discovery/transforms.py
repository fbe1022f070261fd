"""Invertible transforms of the target: ``t = T(y)`` is searched as a sparse sum of features and the
formula is ``y = T^{-1}(sum)`` (AI Feynman's "try y^2, 1/y, log y, ..." step, Udrescu & Tegmark 2020).
``sqrt(1 + a^2 + b^2)`` is linear in features after squaring, ``a b / c`` after the log, ``asin(a/b)``
after the sine.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np
import sympy as sp


@dataclasses.dataclass(frozen=True)
class Transform:
    """``forward(y)`` (None where ``y`` is outside its domain), ``inverse`` (numpy) and ``inverse_sym``
    (sympy) of a target transform; ``family``: the library function the inverse puts in the formula."""

    name: str
    family: str
    forward: Callable[[np.ndarray], Optional[np.ndarray]]
    inverse: Callable[[np.ndarray], np.ndarray]
    inverse_sym: Callable[[sp.Expr], sp.Expr]
    complexity: int


def _where(ok: bool, value: Callable[[], np.ndarray]) -> Optional[np.ndarray]:
    if not ok:
        return None
    with np.errstate(all="ignore"):
        out = value()
    return out if np.all(np.isfinite(out)) else None


def _positive(y: np.ndarray) -> bool:
    return bool(np.all(y > 0))


def _negative(y: np.ndarray) -> bool:
    return bool(np.all(y < 0))


def _log_forward(y):
    if _positive(y):
        return _where(True, lambda: np.log(y))
    return None


def _neglog_forward(y):
    return _where(_negative(y), lambda: np.log(-y))


def _inv_forward(y):
    scale = float(np.max(np.abs(y))) if y.size else 0.0
    return _where(bool(np.all(np.abs(y) > 1e-3 * scale)) and scale > 0, lambda: 1 / y)


def _square_forward(y):
    return _where(_positive(y), lambda: y**2)


def _negsquare_forward(y):
    return _where(_negative(y), lambda: y**2)


def _sqrt_forward(y):
    return _where(_positive(y), lambda: np.sqrt(y))


def _sin_forward(y):
    return _where(bool(np.all(np.abs(y) < np.pi / 2 - 1e-3)), lambda: np.sin(y))


def _tan_forward(y):
    return _where(bool(np.all(np.abs(y) < np.pi / 2 - 0.05)), lambda: np.tan(y))


def _atanh_forward(y):
    return _where(bool(np.all(np.abs(y) < 1 - 1e-4)), lambda: np.arctanh(y))


def _exp_forward(y):
    return _where(bool(np.all(np.abs(y) < 20)), lambda: np.exp(y))


TRANSFORMS: tuple[Transform, ...] = (
    Transform("y", "x", lambda y: y, lambda t: t, lambda e: e, 0),
    Transform("log y", "exp", _log_forward, np.exp, sp.exp, 1),
    Transform("log(-y)", "exp", _neglog_forward, lambda t: -np.exp(t), lambda e: -sp.exp(e), 2),
    Transform("1/y", "1/x", _inv_forward, lambda t: 1 / t, lambda e: 1 / e, 1),
    Transform("y^2", "sqrt", _square_forward, np.sqrt, sp.sqrt, 1),
    Transform("y^2 (y<0)", "sqrt", _negsquare_forward, lambda t: -np.sqrt(t), lambda e: -sp.sqrt(e), 2),
    Transform("sqrt y", "x^2", _sqrt_forward, lambda t: t**2, lambda e: e**2, 1),
    Transform("sin y", "arcsin", _sin_forward, np.arcsin, sp.asin, 1),
    Transform("tan y", "arctan", _tan_forward, np.arctan, sp.atan, 1),
    Transform("atanh y", "tanh", _atanh_forward, np.tanh, sp.tanh, 1),
    Transform("exp y", "log", _exp_forward, np.log, sp.log, 1),
)


def applicable(y: np.ndarray, families: Optional[frozenset[str]] = None) -> list[tuple[Transform, np.ndarray]]:
    """The transforms defined on every value of ``y (n,)`` (and allowed by ``families``), with ``T(y)``."""
    out = []
    for tr in TRANSFORMS:
        if families is not None and tr.family not in families | {"x"}:
            continue
        t = tr.forward(np.asarray(y, np.float64))
        if t is not None and float(np.std(t)) > 0:
            out.append((tr, t))
    return out
