"""Round-robin timing shared by the benchmarks.

Every contender is called once per round, one after another, so a drift in machine load hits all of
them alike (:func:`paired_rounds` times each contender with the baseline alone); ratios against a
baseline are taken per round (each contender's time over the baseline's
in the same round) and reported with their spread, which says how far one run's ratio can be trusted
on a noisy machine.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Hashable, Mapping

import jax
import numpy as np


def time_rounds(calls: Mapping[Hashable, Callable[[], Any]], repeats: int,
                warmup: int = 1) -> dict[Hashable, list[float]]:
    """``{name: [seconds of round 0, round 1, ...]}``: each call (its result waited for with
    ``jax.block_until_ready``) once per round for ``repeats`` rounds, after ``warmup`` untimed calls of
    each (compiling)."""
    if repeats < 1:
        raise ValueError(f"time_rounds: repeats must be >= 1, got {repeats}")
    for call in calls.values():
        for _ in range(warmup):
            jax.block_until_ready(call())
    times: dict[Hashable, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(call())
            times[name].append(time.perf_counter() - start)
    return times


def paired_rounds(calls: Mapping[Hashable, Callable[[], Any]], base: Hashable, repeats: int,
                  warmup: int = 1) -> dict[Hashable, dict[Hashable, list[float]]]:
    """``{name: rounds of the pair (base, name)}`` for every contender but ``base``: each pair timed
    round-robin on its own (:func:`time_rounds`), so the baseline's time is not changed by the other
    contenders (a heavy neighbour evicts its data: an MLP step took 13.3 ms among four B-spline contenders
    at 512 -> 512, 10.7 ms beside one)."""
    if base not in calls:
        raise ValueError(f"paired_rounds: the baseline {base!r} is not among the calls")
    return {name: time_rounds({base: calls[base], name: call}, repeats, warmup)
            for name, call in calls.items() if name != base}


def medians(rounds: Mapping[Hashable, list[float]]) -> dict[Hashable, float]:
    """Median seconds per contender."""
    return {name: statistics.median(ts) for name, ts in rounds.items()}


def ratio_quantiles(rounds: Mapping[Hashable, list[float]], name: Hashable,
                    base: Hashable) -> tuple[float, float, float]:
    """``(25th percentile, median, 75th percentile)`` of the per-round ratios
    ``rounds[name][r] / rounds[base][r]``."""
    num, den = np.asarray(rounds[name], float), np.asarray(rounds[base], float)
    if num.shape != den.shape or num.size == 0:
        raise ValueError(f"ratio_quantiles: {name!r} and {base!r} need the same, non-zero number of rounds")
    p25, p50, p75 = np.percentile(num / den, [25, 50, 75])
    return float(p25), float(p50), float(p75)
