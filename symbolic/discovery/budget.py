"""The time budget of a discovery run: a deadline every stage checks, and a time limit for sympy calls."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Iterator, Optional


class Budget:
    """``seconds`` from creation; :meth:`left` is what remains, :meth:`share` a fraction of it."""

    def __init__(self, seconds: float, *, parent: "Optional[Budget]" = None):
        if not seconds > 0:
            raise ValueError(f"time_budget must be > 0 seconds, got {seconds}")
        self.start = time.perf_counter() if parent is None else parent.start
        self.seconds = float(seconds)
        self.stages: dict[str, float] = {} if parent is None else parent.stages

    def part(self, fraction: float) -> "Budget":
        """A budget that ends when ``fraction`` of this one's total is spent (same clock, same stages)."""
        return Budget(fraction * self.seconds, parent=self)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def expired(self) -> bool:
        return self.left() <= 0

    def share(self, fraction: float) -> float:
        """``fraction`` of the time left (at least 0)."""
        return max(0.0, fraction * self.left())

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Adds the wall time spent inside to ``stages[name]`` (reported as where the time went)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + time.perf_counter() - t0


class TimeLimit(Exception):
    """Raised inside a :func:`time_limit` block when its time is up."""


@contextlib.contextmanager
def time_limit(seconds: Optional[float]) -> Iterator[None]:
    """Interrupt the block with :class:`TimeLimit` after ``seconds`` (a SIGALRM timer: only in the main
    thread of a Unix process; elsewhere the block runs without a limit). sympy's ``simplify`` can
    take minutes on a large expression; this is how its calls keep to the budget."""
    usable = (seconds is not None and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return
    if seconds <= 0:
        raise TimeLimit("no time left")

    def on_alarm(signum, frame):
        # re-armed first: an exception raised while Python runs a callback it guards (a gc callback of
        # jax, a __del__) is printed and swallowed, and the block would then run on without a limit
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        raise TimeLimit(f"over {seconds:.2f} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
