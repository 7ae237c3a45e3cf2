"""Stream's rate limits in the fake (stream-api.md §3 and §9): per app, per endpoint, per minute.

One fake is one app. Each endpoint (Stream's operation name: ``GetCall``, ``ListRecordings``,
``QueryCalls``…) may be given a per-minute limit; the per-second limit is that / 30 (at least 1).
Windows are fixed and aligned to the clock, as ``X-RateLimit-Reset`` (unix seconds) suggests: the
minute ends at the next whole minute, the second at the next whole second. A request over either
limit is refused with 429 (it still counts, as a request Stream received). Every answer carries
``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` of the minute window; an endpoint without a
limit reports :data:`UNLIMITED`, so clients that obey the headers keep their speed in tests.

Tests shorten time with ``window`` (seconds per "minute"; a "second" is then window / 60).
Every arrival is logged, so a test can read the most requests an endpoint got in any second or
minute (:meth:`RateLimits.rate`).
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Literal

UNLIMITED = 1_000_000  # what X-RateLimit-Limit says for an endpoint without a limit
RetryAfter = Literal["seconds", "http-date", "none"]


@dataclass(frozen=True)
class Verdict:
    """What the limiter says of one request: allowed or not, and the headers of its answer."""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # unix seconds: the end of the current minute window
    retry_after: float  # seconds until the window that refused it ends (0 when allowed)


@dataclass(frozen=True)
class EndpointRate:
    """What one endpoint received: every arrival (refused ones too), the refused, and the most
    arrivals in any sliding second and minute (in the endpoint's time scale)."""

    requests: int
    limited: int
    max_per_second: int
    max_per_minute: int


@dataclass
class _Endpoint:
    per_minute: int | None = None
    window: float = 60.0
    arrivals: list[float] = field(default_factory=list)
    limited: int = 0


def _most_within(times: list[float], span: float) -> int:
    """The most entries of sorted `times` inside any half-open interval of length `span`."""
    best = 0
    for index, start in enumerate(times):
        best = max(best, bisect.bisect_left(times, start + span, lo=index) - index)
    return best


class RateLimits:
    """Per-endpoint limits and arrival logs (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._endpoints: dict[str, _Endpoint] = {}

    def set(self, endpoint: str, per_minute: int | None, *, window: float = 60.0) -> None:
        """Limit `endpoint` to `per_minute` requests per window (None: no limit) and forget its log."""
        if per_minute is not None and per_minute < 1:
            raise ValueError("per_minute must be at least 1 (or None for no limit)")
        with self._lock:
            self._endpoints[endpoint] = _Endpoint(per_minute, window)

    def admit(self, endpoint: str, now: float | None = None) -> Verdict:
        """Log one arrival at `endpoint` and say whether it is within the limits."""
        with self._lock:
            now = time.time() if now is None else now  # taken under the lock: the log stays in order
            state = self._endpoints.setdefault(endpoint, _Endpoint())
            state.arrivals.append(now)
            minute_start = math.floor(now / state.window) * state.window
            reset = math.ceil(minute_start + state.window)
            if state.per_minute is None:
                return Verdict(True, UNLIMITED, UNLIMITED - 1, reset, 0.0)
            second = state.window / 60
            second_start = math.floor(now / second) * second
            in_minute = self._since(state, minute_start)
            in_second = self._since(state, second_start)
            per_second = max(1, state.per_minute // 30)
            remaining = max(0, state.per_minute - in_minute)
            if in_minute > state.per_minute:
                wait = minute_start + state.window - now
            elif in_second > per_second:
                wait = second_start + second - now
            else:
                return Verdict(True, state.per_minute, remaining, reset, 0.0)
            state.limited += 1
            return Verdict(False, state.per_minute, remaining, reset, wait)

    @staticmethod
    def _since(state: _Endpoint, start: float) -> int:
        """Arrivals at or after `start` (the log is in arrival order; the newest is included)."""
        return len(state.arrivals) - bisect.bisect_left(state.arrivals, start)

    def rate(self, endpoint: str) -> EndpointRate:
        """What `endpoint` has received since its limit was last set (or since the start)."""
        with self._lock:
            state = self._endpoints.get(endpoint, _Endpoint())
            times = list(state.arrivals)
            return EndpointRate(len(times), state.limited, _most_within(times, state.window / 60),
                                _most_within(times, state.window))


def retry_after_value(style: RetryAfter, wait: float, now: float | None = None) -> str | None:
    """The ``Retry-After`` header for a 429 that should wait `wait` seconds, in `style`."""
    if style == "none":
        return None
    if style == "seconds":
        return str(max(1, math.ceil(wait)))
    moment = (time.time() if now is None else now) + wait
    return formatdate(math.ceil(moment), usegmt=True)
