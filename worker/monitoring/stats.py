"""Cluster-wide figures in Redis: written by every process as things happen, read at scrape time.

Keys (prefix P, default ``archiver:``), all small and bounded:
  P stats:bytes            HASH  storage → bytes archived (ever)
  P stats:bytes_by_day     HASH  YYYY-MM-DD (UTC) → bytes archived that day, all storages
  P stats:duration         HASH  "storage|le" → successful transfers of at most `le` seconds (not
                                 cumulative: one field per bucket), "storage|sum_ms", "storage|count"
  P stats:retries          HASH  "storage|reason" → retries scheduled
  P stats:failures         HASH  "storage|reason" → permanent failures, and files lost ("lost")
  P stats:webhooks         HASH  outcome → webhook deliveries answered with it
  P stats:files_received   HASH  kind → files new to the ledger that Stream's events announced (webhook, SQS)
  P stats:last_webhook     STRING unix time (seconds) of the last authenticated webhook
  P storage_health         HASH  storage → JSON {ok, reason, checked_at}
  P stats:stream_requests  HASH  "endpoint|outcome" → Stream API requests (see STREAM_OUTCOMES)
  P stats:stream_wait_ms   HASH  endpoint → milliseconds spent waiting for Stream's rate limits
Writes are one pipeline of HINCRBY/HSET each. A figure that cannot be written (Redis away) is kept
in the process and added to the next write, so a short outage loses nothing but time.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import redis
import structlog

from worker.ledger.keys import DEFAULT_PREFIX, Keys

log = structlog.get_logger(__name__)

# Seconds: a small transcription takes a second, a long composite recording an hour or more.
DURATION_BUCKETS: tuple[float, ...] = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, math.inf)
WEBHOOK_OUTCOMES: tuple[str, ...] = ("accepted", "known", "ignored", "failure_noted", "expired", "refused",
                                     "malformed", "too_large", "unavailable")
# Stream API answers: ok, gone (404 / 400 code 16), rate_limited (429), refused (other 4xx), error (5xx,
# unreadable), unreachable (no answer).
STREAM_OUTCOMES: tuple[str, ...] = ("ok", "gone", "rate_limited", "refused", "error", "unreachable")
AUTHENTICATED = frozenset({"accepted", "known", "ignored", "failure_noted", "expired"})
SEP = "|"  # storage names and reasons are [A-Za-z0-9_-]; a stray "|" only splits at its first one


def bucket_label(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else f"{bound:g}"


def day_of(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class Health:
    """The last check of one storage."""

    ok: bool
    reason: str | None
    checked_at: float  # unix seconds

    def to_json(self) -> str:
        return json.dumps({"ok": self.ok, "reason": self.reason, "checked_at": self.checked_at})

    @classmethod
    def from_json(cls, raw: str) -> Health | None:
        try:
            value = json.loads(raw)
            return cls(bool(value["ok"]), value.get("reason"), float(value["checked_at"]))
        except (ValueError, KeyError, TypeError):
            return None


class Stats:
    """Writes and reads the figures above; safe to share between threads. Keep one per process
    (`Runtime.stats`, the web app's): what Redis refused waits in it for the next write."""

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self.redis, self._keys = client, Keys(prefix)
        self._pending: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    # -- writing ---------------------------------------------------------------------------------

    def _add(self, increments: Counter[tuple[str, str]], **extra: tuple[str, str]) -> None:
        """Add `increments` ((hash, field) → n) and set `extra` (key → (field or "", value)) in one
        pipeline; on a Redis error keep the increments for next time, and never raise."""
        with self._lock:
            increments = increments + self._pending
            self._pending = Counter()
        try:
            pipe = self.redis.pipeline(transaction=False)
            for (name, field), amount in increments.items():
                pipe.hincrby(self._keys.figure(name), field, amount)
            for name, (field, value) in extra.items():
                if field:
                    pipe.hset(self._keys.figure(name), field, value)
                else:
                    pipe.set(self._keys.figure(name), value)
            pipe.execute()
        except redis.RedisError as exc:
            with self._lock:
                self._pending.update(increments)
            log.warning("stats_not_recorded", error=str(exc))

    def archived(self, storage: str, size: int, seconds: float, now: float | None = None) -> None:
        """A transfer archived `size` bytes in `seconds` (from its attempt's start)."""
        now = time.time() if now is None else now
        bound = next(b for b in DURATION_BUCKETS if seconds <= b)
        increments: Counter[tuple[str, str]] = Counter({
            ("stats:bytes", storage): size,
            ("stats:bytes_by_day", day_of(now)): size,
            ("stats:duration", f"{storage}{SEP}{bucket_label(bound)}"): 1,
            ("stats:duration", f"{storage}{SEP}count"): 1,
            ("stats:duration", f"{storage}{SEP}sum_ms"): int(seconds * 1000),
        })
        self._add(increments)

    def retried(self, storage: str, reason: str) -> None:
        self._add(Counter({("stats:retries", f"{storage}{SEP}{reason}"): 1}))

    def failed(self, storage: str, reason: str) -> None:
        """A permanent failure, or (reason ``lost``) a file Stream deleted before it was archived."""
        self._add(Counter({("stats:failures", f"{storage}{SEP}{reason}"): 1}))

    def webhook(self, outcome: str, now: float | None = None) -> None:
        """One webhook answered with `outcome` (see WEBHOOK_OUTCOMES)."""
        extra: dict[str, tuple[str, str]] = {}
        if outcome in AUTHENTICATED:
            extra["stats:last_webhook"] = ("", repr(time.time() if now is None else now))
        self._add(Counter({("stats:webhooks", outcome): 1}), **extra)

    def file_received(self, kind: str) -> None:
        """A Stream event (a webhook delivery, an SQS message) announced a file of `kind` new to the ledger."""
        self._add(Counter({("stats:files_received", kind): 1}))

    def stream_request(self, endpoint: str, outcome: str) -> None:
        """One Stream API request to `endpoint` ("GET /api/v2/video/call/{type}/{id}") ended in `outcome`."""
        self._add(Counter({("stats:stream_requests", f"{endpoint}{SEP}{outcome}"): 1}))

    def stream_waited(self, endpoint: str, seconds: float) -> None:
        """Requests to `endpoint` waited `seconds` for Stream's rate limits (the shared budget or a 429)."""
        self._add(Counter({("stats:stream_wait_ms", endpoint): round(seconds * 1000)}))

    def storage_checked(self, storage: str, ok: bool, reason: str | None, now: float | None = None) -> None:
        health = Health(ok, reason, time.time() if now is None else now)
        try:
            self.redis.hset(self._keys.figure("storage_health"), storage, health.to_json())
        except redis.RedisError as exc:
            log.warning("storage_health_not_recorded", storage=storage, error=str(exc))

    def forget_storages(self, keep: set[str]) -> None:
        """Drop the health of storages no longer configured (so no stale `archiver_storage_up` stays)."""
        gone = set(self._hash("storage_health")) - keep
        if gone:
            self.redis.hdel(self._keys.figure("storage_health"), *gone)

    # -- reading ---------------------------------------------------------------------------------

    def _hash(self, name: str) -> dict[str, str]:
        return cast(dict[str, str], self.redis.hgetall(self._keys.figure(name)))

    def pairs(self, name: str) -> dict[tuple[str, str], int]:
        """A "storage|x" → n hash as (storage, x) → n."""
        out: dict[tuple[str, str], int] = {}
        for field, value in self._hash(name).items():
            storage, _, rest = field.partition(SEP)
            out[(storage, rest)] = int(value)
        return out

    def bytes_by_storage(self) -> dict[str, int]:
        return {storage: int(v) for storage, v in self._hash("stats:bytes").items()}

    def bytes_by_day(self, days: int = 30, now: float | None = None) -> list[tuple[str, int]]:
        """The last `days` days (UTC), oldest first, with the bytes archived on each (0 if none)."""
        now = time.time() if now is None else now
        wanted = [day_of(now - 86_400 * back) for back in range(days - 1, -1, -1)]
        values = cast(list[str | None], self.redis.hmget(self._keys.figure("stats:bytes_by_day"), wanted))
        return [(day, int(v or 0)) for day, v in zip(wanted, values, strict=True)]

    def webhooks(self) -> dict[str, int]:
        return {outcome: int(v) for outcome, v in self._hash("stats:webhooks").items()}

    def files_received(self) -> dict[str, int]:
        """Kind → files new to the ledger that Stream's events announced."""
        return {kind: int(v) for kind, v in self._hash("stats:files_received").items()}

    def stream_waits(self) -> dict[str, float]:
        """Endpoint → seconds waited for the rate limits."""
        return {endpoint: int(v) / 1000 for endpoint, v in self._hash("stats:stream_wait_ms").items()}

    def last_webhook(self) -> float | None:
        raw = self.redis.get(self._keys.figure("stats:last_webhook"))
        return float(cast(str, raw)) if raw else None

    def storage_health(self) -> dict[str, Health]:
        found = {name: Health.from_json(raw) for name, raw in self._hash("storage_health").items()}
        return {name: health for name, health in found.items() if health is not None}


def durations(stats: Stats) -> dict[str, tuple[list[tuple[str, int]], float, int]]:
    """Per storage: cumulative (le, count) buckets, sum of seconds and count, for a histogram."""
    raw: dict[str, dict[str, int]] = {}
    for (storage, field), value in stats.pairs("stats:duration").items():
        raw.setdefault(storage, {})[field] = value
    out: dict[str, tuple[list[tuple[str, int]], float, int]] = {}
    for storage, fields in raw.items():
        running, buckets = 0, []
        for bound in DURATION_BUCKETS:
            running += fields.get(bucket_label(bound), 0)
            buckets.append(("+Inf" if math.isinf(bound) else repr(float(bound)), running))  # as Prometheus writes le
        out[storage] = (buckets, fields.get("sum_ms", 0) / 1000, fields.get("count", 0))
    return out
