"""A steady pace for an audit's storage reads: at most `rate` objects a second.

An audit reads every object of its window (a stat, or with ``--deep`` the whole object), so
without a pace it would spend a store's request quota (and, deep, its bandwidth) as fast as it
could. The pace is this process's alone: one audit runs at a time (the scheduler's lock, or one
command). The clock and the sleep are parameters, so a test counts the pace without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Pacer:
    """Spaces calls to `wait` at least ``1 / rate`` seconds apart (the first goes at once)."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0:
            raise ValueError(f"a pace needs a positive rate, got {rate!r}")
        self.interval, self.clock, self.sleep = 1.0 / rate, clock, sleep
        self.next_at: float | None = None
        self.count = 0  # objects paced so far
        self.waited = 0.0  # seconds slept so far

    def wait(self) -> None:
        """Return when the next object may be read (sleeping until then)."""
        now = self.clock()
        if self.next_at is not None and now < self.next_at:
            pause = self.next_at - now
            self.sleep(pause)
            self.waited += pause
            now = self.next_at
        self.next_at = now + self.interval
        self.count += 1
