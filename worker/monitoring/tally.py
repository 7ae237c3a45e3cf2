"""Transfers by state and storage, at a bounded cost however large the ledger grows.

A state's total is one ZCARD. Its split by storage needs each member's ``storage`` field, which
`_COUNT` reads inside Redis, `CHUNK` members per call (a few milliseconds each), so only the counts
cross the network. A state of at most `EXACT_LIMIT` transfers is counted outright on every read. A
larger one (``archived`` after a while: 100k transfers and more) is counted once, and the count kept
in ``P stats:tally:<state>`` with the highest score (ms of entry) it covers; later reads count only
the members that entered since (scores above that one) and add them. Members leave ``archived`` and
``skipped`` only when an operator retries them; when the kept count plus the newcomers no longer
equals the state's size (someone left, or a worker's clock lagged), the state is counted again from
scratch, at most once per `RECOUNT_EVERY` (until then the last split is shown, the total staying exact).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, cast

import redis

from worker.ledger.keys import DEFAULT_PREFIX, Keys
from worker.ledger.models import STATES

EXACT_LIMIT = 10_000
CHUNK = 2_000  # members per script call: a few milliseconds of Redis each
RECOUNT_EVERY = 300.0  # seconds
# The ledger's state names → the metric's: "running" reads better on a dashboard than "transferring".
STATE_LABELS = {"queued": "queued", "transferring": "running", "archived": "archived", "failed": "failed",
                "lost": "lost", "skipped": "skipped"}

# ARGV: prefix, state, mode ('rank' | 'score'), low, high, limit
#   ->  {members seen, highest score seen, storage, count, storage, count, ...}
# rank: members low..high by rank; score: up to `limit` members with low < score <= high.
_COUNT = """
local p = ARGV[1]
local key = p .. 'state:' .. ARGV[2]
local rows
if ARGV[3] == 'rank' then
  rows = redis.call('ZRANGE', key, tonumber(ARGV[4]), tonumber(ARGV[5]), 'WITHSCORES')
else
  rows = redis.call('ZRANGEBYSCORE', key, '(' .. ARGV[4], ARGV[5], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[6]))
end
local counts, top = {}, 0
for i = 1, #rows, 2 do
  local storage = redis.call('HGET', p .. 'transfer:' .. rows[i], 'storage') or ''
  counts[storage] = (counts[storage] or 0) + 1
  local score = tonumber(rows[i + 1])
  if score > top then top = score end
end
local out = {#rows / 2, tostring(top)}
for storage, n in pairs(counts) do out[#out + 1] = storage; out[#out + 1] = n end
return out
"""


@dataclass
class _Counted:
    counts: Counter[str]
    seen: int
    top: float


class Tally:
    """Counts transfers by (state, storage) from the ledger's ``state:<state>`` sets."""

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self.redis, self.prefix, self.keys = client, prefix, Keys(prefix)
        self._count = client.register_script(_COUNT)

    def by_state(self) -> dict[str, dict[str, int]]:
        """Ledger state → storage → transfers; a state's storages sum to its exact size except, for
        a while, in the case the module's docstring describes."""
        pipe = self.redis.pipeline(transaction=False)
        for state in STATES:
            pipe.zcard(self.keys.state(state))
        sizes = [int(n) for n in pipe.execute()]
        return {state: self._split(state, size) for state, size in zip(STATES, sizes, strict=True)}

    def _split(self, state: str, size: int) -> dict[str, int]:
        if size == 0:
            return {}
        if size <= EXACT_LIMIT:
            return dict(self._by_rank(state).counts)
        cached = self._cached(state)
        if cached is not None:
            kept, counted_at = cached
            new = self._run(state, "score", repr(kept.top), "+inf", EXACT_LIMIT + 1)
            if kept.seen + new.seen == size:
                total = _Counted(kept.counts + new.counts, size, max(kept.top, new.top))
                self._save(state, total, counted_at)
                return dict(total.counts)
            if time.time() - counted_at < RECOUNT_EVERY:
                return dict(kept.counts)
        total = self._by_rank(state)
        self._save(state, total, time.time())
        return dict(total.counts)

    def _by_rank(self, state: str) -> _Counted:
        total, start = _Counted(Counter(), 0, 0.0), 0
        while True:
            chunk = self._run(state, "rank", str(start), str(start + CHUNK - 1), CHUNK)
            total = _Counted(total.counts + chunk.counts, total.seen + chunk.seen, max(total.top, chunk.top))
            if chunk.seen < CHUNK:
                return total
            start += CHUNK

    def _run(self, state: str, mode: str, low: str, high: str, limit: int) -> _Counted:
        out = cast(list[Any], self._count(args=[self.prefix, state, mode, low, high, limit]))
        pairs = out[2:]
        counts = Counter({str(pairs[i]): int(pairs[i + 1]) for i in range(0, len(pairs), 2) if pairs[i]})
        return _Counted(counts, int(out[0]), float(out[1]))

    def _cached(self, state: str) -> tuple[_Counted, float] | None:
        raw = self.redis.get(self.keys.tally(state))
        if not raw:
            return None
        try:
            value: dict[str, Any] = json.loads(cast(str, raw))
            counts = Counter({str(k): int(v) for k, v in value["counts"].items()})
            return _Counted(counts, int(value["total"]), float(value["top"])), float(value["counted_at"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def _save(self, state: str, counted: _Counted, counted_at: float) -> None:
        value = {"counts": dict(counted.counts), "total": counted.seen, "top": counted.top, "counted_at": counted_at}
        self.redis.set(self.keys.tally(state), json.dumps(value))
