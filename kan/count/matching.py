"""Hidden widths that put a model kind on a parameter or FLOP budget.

All hidden layers get the same width ``h``; counts grow with ``h``, so the search is a bisection on
the closed forms of :func:`kan.count.spec_counts` (no model is built). The width whose count is
closest to the budget is kept; a ValueError says why when none is within ``tolerance``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .kinds import get_kind, spec_counts

METRICS = ("params", "flops")
_MAX_WIDTH = 1 << 20


class Match(NamedTuple):
    """A matched model: its ``widths``, ``params``, ``flops`` and the relative ``error`` of the
    matched metric from the budget (``count / budget - 1``)."""

    widths: tuple[int, ...]
    params: int
    flops: int
    error: float


def match_widths(kind: str, budget: float, *, in_features: int, out_features: int, depth: int = 1,
                 metric: str = "params", tolerance: float = 0.05, **options: Any) -> Match:
    """Widths ``(in, h, ..., h, out)`` (``depth`` hidden layers) of ``kind`` whose ``metric``
    (``"params"`` or ``"flops"`` per sample) is closest to ``budget``; ValueError if it is not within
    ``tolerance`` (relative), e.g. a budget below the count at the smallest hidden width.
    ``options`` go to the kind (``grid_size=...``)."""
    if metric not in METRICS:
        raise ValueError(f"match_widths: metric must be one of {METRICS}, got {metric!r}")
    if not budget > 0:
        raise ValueError(f"match_widths: budget must be > 0, got {budget}")
    if int(depth) < 1:
        raise ValueError(f"match_widths: depth (hidden layers) must be >= 1, got {depth}")
    spec = get_kind(kind)
    idx = METRICS.index(metric)

    def count(h: int) -> tuple[int, int]:
        return spec_counts(kind, (in_features,) + (h,) * int(depth) + (out_features,), **options)

    lo = spec.min_hidden
    smallest = count(lo)[idx]
    if smallest > budget * (1 + tolerance):
        raise ValueError(f"match_widths: budget {budget:g} {metric} is impossible for {kind!r}: its smallest "
                         f"model (hidden width {lo}, depth {depth}) already has {smallest} {metric}")
    hi = lo
    while count(hi)[idx] < budget:
        if hi >= _MAX_WIDTH:
            raise ValueError(f"match_widths: budget {budget:g} {metric} needs a hidden width above {_MAX_WIDTH}")
        hi *= 2
    while hi - lo > 1:  # invariant: count(lo) <= budget or lo == min_hidden; count(hi) >= budget
        mid = (lo + hi) // 2
        if count(mid)[idx] < budget:
            lo = mid
        else:
            hi = mid
    best = min((lo, hi), key=lambda h: abs(count(h)[idx] - budget))
    params, flops = count(best)
    error = (params, flops)[idx] / budget - 1.0
    if abs(error) > tolerance:
        raise ValueError(f"match_widths: {kind!r} cannot get within {tolerance:.0%} of {budget:g} {metric} at "
                         f"depth {depth}: the closest hidden width {best} gives {(params, flops)[idx]}")
    widths = (int(in_features),) + (best,) * int(depth) + (int(out_features),)
    return Match(widths, int(params), int(flops), float(error))
