"""Input checks, variable symbols and the fixed train / validation / test split of a discovery run."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import sympy as sp


def check_xy(x, y) -> tuple[np.ndarray, np.ndarray]:
    """``x (n, d)`` and ``y (n,)`` or ``(n, m)`` as float64 arrays, with errors that name the problem."""
    try:
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"discover: x and y must be numeric arrays ({err})") from None
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"discover: x must have shape (n, d), got {x.shape}")
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(f"discover: y must have shape (n,) or (n, m) with n = {x.shape[0]} rows of x, got {y.shape}")
    if x.shape[0] < 20:
        raise ValueError(f"discover: need at least 20 rows of data, got {x.shape[0]}")
    for name, arr in (("x", x), ("y", y)):
        bad = ~np.all(np.isfinite(arr), axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)
            raise ValueError(f"discover: {name} has {bad.sum()} rows with NaN or inf (rows "
                             f"{', '.join(map(str, rows[:10]))}{', ...' if rows.size > 10 else ''}); drop them first")
    return x, y


def make_variables(x: np.ndarray, names: Optional[Sequence[str]] = None) -> tuple[sp.Symbol, ...]:
    """One real sympy symbol per column (``x_1 .. x_d`` unless ``names``); positive where the column is,
    so that ``sqrt(x^2)`` and ``log`` simplify as they should on the data's range."""
    d = x.shape[1]
    if names is None:
        names = [f"x_{i + 1}" for i in range(d)]
    names = [str(n) for n in names]
    if len(names) != d:
        raise ValueError(f"discover: {len(names)} variable names for {d} columns of x")
    if len(set(names)) != d:
        raise ValueError(f"discover: variable names must be distinct, got {names}")
    return tuple(sp.Symbol(n, real=True, positive=True if np.all(x[:, i] > 0) else None)
                 for i, n in enumerate(names))


def split_rows(n: int, seed: int, fractions: tuple[float, float] = (0.6, 0.2)) -> tuple[np.ndarray, ...]:
    """Row indices of train / validation / test (60 / 20 / 20 by default), shuffled with ``seed``.
    The test rows are only used to report the chosen formulas' errors, never to choose."""
    order = np.random.default_rng(seed).permutation(n)
    a = int(round(fractions[0] * n))
    b = a + int(round(fractions[1] * n))
    return order[:a], order[a:b], order[b:]
