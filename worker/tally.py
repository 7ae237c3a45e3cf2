"""Transfers by state and storage, at a bounded cost however large the ledger grows.

A state's total is one ZCARD. Its split by storage needs each member's ``storage`` field: read
outright (ZRANGE + pipelined HGET, in chunks) while the state holds at most `EXACT_LIMIT`
transfers. A larger state (``archived`` after a while: 100k transfers and more) is counted once and
the count kept in ``P stats:tally:<state>`` with the highest score (ms of entry) it covers; later
reads count only the members that entered since (ZRANGEBYSCORE above that score) and add them. Members
only leave ``archived`` and ``skipped`` when an operator retries them, and when the cached count plus
the newcomers no longer equals the state's ZCARD (someone left, or a worker's clock lagged), the
state is counted again from scratch, at most once per `RECOUNT_EVERY` (until then the last split is
shown, the total staying exact).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any, cast

import redis

from worker.ledger import DEFAULT_PREFIX, STATES

EXACT_LIMIT = 5_000
CHUNK = 1_000
RECOUNT_EVERY = 300.0  # seconds
# The ledger's state names → the metric's: "running" reads better on a dashboard than "transferring".
STATE_LABELS = {"queued": "queued", "transferring": "running", "archived": "archived", "failed": "failed",
                "lost": "lost", "skipped": "skipped"}


class Tally:
    """Counts transfers by (state, storage) from the ledger's ``state:<state>`` sets."""

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self.redis, self.prefix = client, prefix

    def by_state(self) -> dict[str, dict[str, int]]:
        """Ledger state → storage → transfers; a state's storages sum to its exact size except, for
        a moment, in the case the docstring above describes."""
        pipe = self.redis.pipeline(transaction=False)
        for state in STATES:
            pipe.zcard(f"{self.prefix}state:{state}")
        sizes = [int(n) for n in pipe.execute()]
        return {state: self._split(state, size) for state, size in zip(STATES, sizes, strict=True)}

    def _split(self, state: str, size: int) -> dict[str, int]:
        if size == 0:
            return {}
        if size <= EXACT_LIMIT:
            return dict(self._storages(self._members(state, "-inf", "+inf")))
        cached = self._cached(state)
        if cached is not None:
            counts, total, top, counted_at = cached
            new = self._members(state, f"({top}", "+inf", limit=EXACT_LIMIT + 1)
            if total + len(new) == size:
                counts.update(self._storages(new))
                self._save(state, counts, size, max([top, *new.values()]), counted_at)
                return dict(counts)
            if time.time() - counted_at < RECOUNT_EVERY:
                return dict(counts)
        return self._recount(state)

    def _recount(self, state: str) -> dict[str, int]:
        counts: Counter[str] = Counter()
        top, total, start = 0.0, 0, 0
        while True:
            chunk = cast(list[tuple[str, float]], self.redis.zrange(
                f"{self.prefix}state:{state}", start, start + CHUNK - 1, withscores=True))
            members = dict(chunk)
            counts.update(self._storages(members))
            total += len(members)
            top = max([top, *members.values()])
            if len(chunk) < CHUNK:
                break
            start += CHUNK
        self._save(state, counts, total, top, time.time())
        return dict(counts)

    def _members(self, state: str, low: str, high: str, limit: int | None = None) -> dict[str, float]:
        key = f"{self.prefix}state:{state}"
        if limit is None:
            rows = self.redis.zrangebyscore(key, low, high, withscores=True)
        else:
            rows = self.redis.zrangebyscore(key, low, high, start=0, num=limit, withscores=True)
        return dict(cast(list[tuple[str, float]], rows))

    def _storages(self, members: dict[str, float]) -> Counter[str]:
        counts: Counter[str] = Counter()
        ids = list(members)
        for start in range(0, len(ids), CHUNK):
            pipe = self.redis.pipeline(transaction=False)
            for tid in ids[start:start + CHUNK]:
                pipe.hget(f"{self.prefix}transfer:{tid}", "storage")
            counts.update(str(s) for s in pipe.execute() if s)
        return counts

    def _cached(self, state: str) -> tuple[Counter[str], int, float, float] | None:
        raw = self.redis.get(f"{self.prefix}stats:tally:{state}")
        if not raw:
            return None
        try:
            value: dict[str, Any] = json.loads(cast(str, raw))
            return (Counter({str(k): int(v) for k, v in value["counts"].items()}), int(value["total"]),
                    float(value["top"]), float(value["counted_at"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def _save(self, state: str, counts: Counter[str], total: int, top: float, counted_at: float) -> None:
        value = {"counts": dict(counts), "total": total, "top": top, "counted_at": counted_at}
        self.redis.set(f"{self.prefix}stats:tally:{state}", json.dumps(value))
