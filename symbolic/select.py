"""Choosing among look-alike edge functions by how well the whole formula fits the data.

On a narrow input range several library functions fit a learned edge almost equally well (``log`` and
``1/x`` on [1, 2], ``sqrt`` and ``log`` on [8, 32]), and the network's edges are only accurate to
~1e-3, so the per-edge ranking can pick the wrong one. Here each snapped edge's runner-up candidates
(kept by ``auto_symbolic``) are tried in the whole-model formula: the formula's constants are refitted
in float64 on the training data and the swap is kept when the validation RMSE drops by at least
``factor``. No recompilation is involved (only sympy and numpy).
"""

from __future__ import annotations

import time
from typing import Any, Optional, Sequence

import numpy as np
import sympy as sp

from kan.edit.surgery import replace_fields

from .constants import refit_rmse
from .formula import canonicalize, default_variables, model_expressions
from .snap import SnapRecord


def _swap(model: Any, layer: int, out: int, inp: int, name: str, affine: Sequence[float]) -> Any:
    import equinox as eqx

    layers = list(model.layers)
    sym = layers[layer].symbolic.with_edge(out, inp, name, affine)
    layers[layer] = replace_fields(layers[layer], symbolic=sym)
    return eqx.tree_at(lambda m: m.layers, model, tuple(layers))


def _score(model: Any, variables, train, val) -> float:
    total = 0.0
    for o, expr in enumerate(model_expressions(model, variables)):
        total += refit_rmse(canonicalize(expr), variables, (train[0], train[1][:, o]), (val[0], val[1][:, o])) ** 2
    return float(np.sqrt(total))


def select_by_formula(
    model: Any,
    records: Sequence[SnapRecord],
    data: tuple[Any, Any],
    val_data: Optional[tuple[Any, Any]] = None,
    *,
    factor: float = 2.0,
    passes: int = 3,
    variables: Optional[Sequence[sp.Symbol]] = None,
    max_points: Optional[int] = 300,
    max_seconds: Optional[float] = None,
) -> tuple[Any, list[SnapRecord]]:
    """Coordinate search over the snapped edges (in ``records`` order): swap an edge to one of its
    alternatives when the refitted formula's validation RMSE improves by ``factor``; repeated for up
    to ``passes`` sweeps while a sweep still swaps something (a swap of one edge can make another
    edge's alternative pay off). Returns the model (with the swapped symbolic edges) and the records
    of the swaps made, in order. Scores use the first ``max_points`` training and validation
    points (None: all); the search stops after ``max_seconds`` (None: no limit) with the swaps made
    so far, since each trial refits a formula whose size grows with the model."""
    x, y = (np.asarray(a, np.float64) for a in data)
    vx, vy = (x, y) if val_data is None else (np.asarray(a, np.float64) for a in val_data)
    if factor < 1.0:
        raise ValueError(f"select_by_formula: factor must be >= 1, got {factor}")
    if passes < 1:
        raise ValueError(f"select_by_formula: passes must be >= 1, got {passes}")
    variables = default_variables(model.widths[0]) if variables is None else tuple(variables)
    keep = slice(None, max_points)
    train = (x[keep], y.reshape(len(y), -1)[keep])
    val = (vx[keep], vy.reshape(len(vy), -1)[keep])
    deadline = None if max_seconds is None else time.perf_counter() + max_seconds
    current = _score(model, variables, train, val)
    swaps = []
    for _ in range(passes):
        swapped = False
        for rec in records:
            if not rec.snapped:
                continue
            current_name = model.layers[rec.layer].symbolic.names[rec.out][rec.inp]
            # Look-alikes only: alternatives that fit the edge much worse than the snapped function
            # (over 100x its unexplained variance, and over 1e-3) are not worth a formula refit.
            worst = max(100.0 * (1.0 - rec.r2), 1e-3)
            options = [(rec.name, rec.r2, rec.affine)] + [alt for alt in rec.alternatives if 1.0 - alt[1] <= worst]
            best = None
            for name, r2, affine in options:
                if deadline is not None and time.perf_counter() > deadline:
                    return model, swaps
                if name == current_name:
                    continue
                trial = _swap(model, rec.layer, rec.out, rec.inp, name, affine)
                try:
                    score = _score(trial, variables, train, val)
                except (ValueError, TypeError, ZeroDivisionError, OverflowError):
                    continue
                if score * factor < current and (best is None or score < best[0]):
                    best = (score, trial, SnapRecord(rec.layer, rec.out, rec.inp, name, r2, tuple(affine), True))
            if best is not None:
                current, model = best[0], best[1]
                swaps.append(best[2])
                swapped = True
        if not swapped:
            break
    return model, swaps
