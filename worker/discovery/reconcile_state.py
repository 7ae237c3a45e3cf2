"""What reconciliation keeps between runs: its watermark, when each mode last completed, and the
calls whose listing failed (retried by the next run).

Keys (prefix P, default ``archiver:``)::

  P reconcile:marks    HASH  watermark         unix ms: start of the latest completed run (either mode)
                             <mode>_completed_at unix ms: end of the latest completed run of <mode>
                             <mode>_failed_calls calls that run could not list
  P reconcile:failed   HASH  call cid → JSON {call, error, first_failed_at (ms), attempts}

The watermark and the completion times only move forward (a slow run that completes after a newer
one does not pull them back). **Failed calls** are kept in ``reconcile:failed`` with the call
object QueryCalls returned, and listed again at the start of the next run of either mode; so the
watermark may pass them, and an incremental run stays proportional to what changed even when one
call keeps failing. An entry is dropped when its listing succeeds, when Stream no longer has the
call, or `retention` after its first failure (Stream has deleted its files by then). Every
function raises redis errors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from worker.clock import now_ms
from worker.ledger.keys import Keys
from worker.ledger.store import Ledger

Mode = Literal["incremental", "full"]
MODES: tuple[Mode, ...] = ("incremental", "full")
RETRY_LIMIT = 1000  # failed calls retried per run (the oldest failures first)

# Set a hash field to ARGV[2] only when that is more than its current value.
_FORWARD = """
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
if tonumber(ARGV[2]) > old then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 0
"""


@dataclass(frozen=True)
class Marks:
    """What monitoring shows: the watermark and, per mode, the last completion (ms) and its failed calls."""

    watermark_ms: int | None
    completed_at_ms: dict[str, int]
    failed_calls: dict[str, int]
    pending_calls: int  # calls waiting in ``reconcile:failed`` for the next run


def read_marks(client: Any, prefix: str) -> Marks:
    """The reconciliation figures (two Redis commands)."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(Keys(prefix).reconcile_marks)
    pipe.hlen(Keys(prefix).reconcile_failed)
    raw, pending = pipe.execute()
    values = {k: int(v) for k, v in cast(dict[str, str], raw).items() if v.lstrip("-").isdigit()}
    return Marks(values.get("watermark"),
                 {m: values[f"{m}_completed_at"] for m in MODES if f"{m}_completed_at" in values},
                 {m: values[f"{m}_failed_calls"] for m in MODES if f"{m}_failed_calls" in values}, int(pending))


def watermark_ms(ledger: Ledger) -> int | None:
    """The start of the latest completed reconciliation (ms), or None before the first."""
    raw = ledger.redis.hget(ledger.keys.reconcile_marks, "watermark")
    return int(cast(str, raw)) if raw else None


def completed(ledger: Ledger, mode: Mode, started_ms: int, failed_calls: int) -> None:
    """A run of `mode` that started at `started_ms` completed now, `failed_calls` calls not listed."""
    key = ledger.keys.reconcile_marks
    pipe = ledger.redis.pipeline(transaction=True)
    pipe.eval(_FORWARD, 1, key, "watermark", started_ms)
    pipe.eval(_FORWARD, 1, key, f"{mode}_completed_at", now_ms())
    pipe.hset(key, f"{mode}_failed_calls", failed_calls)
    pipe.execute()


class FailedCalls:
    """The calls whose listing failed, to retry (see the module docstring)."""

    def __init__(self, ledger: Ledger, retention_ms: int) -> None:
        self.redis, self.key, self.retention_ms = ledger.redis, ledger.keys.reconcile_failed, retention_ms

    def add(self, cid: str, call: Mapping[str, Any], error: str) -> None:
        """Keep `cid` (with its call object) for the next run; its first failure time is kept."""
        raw = cast(str | None, self.redis.hget(self.key, cid))
        entry = _entry(raw) or {"first_failed_at": now_ms(), "attempts": 0}
        entry.update(call=dict(call), error=error, attempts=int(entry.get("attempts") or 0) + 1)
        self.redis.hset(self.key, cid, json.dumps(entry))

    def settled(self, cids: list[str]) -> None:
        """These calls were listed: nothing to retry for them."""
        if cids:
            self.redis.hdel(self.key, *cids)

    def due(self, limit: int = RETRY_LIMIT) -> list[tuple[str, dict[str, Any], str]]:
        """(cid, call, last error) of the calls to retry, the least tried first (then the oldest
        failure); entries older than `retention` are dropped."""
        entries = {cid: _entry(raw) for cid, raw in cast(dict[str, str], self.redis.hgetall(self.key)).items()}
        cutoff = now_ms() - self.retention_ms
        stale = [cid for cid, e in entries.items() if e is None or int(e.get("first_failed_at") or 0) < cutoff]
        self.settled(stale)
        kept = sorted(((int(e.get("attempts") or 0), int(e["first_failed_at"]), cid, e) for cid, e in entries.items()
                       if e is not None and cid not in stale), key=lambda row: row[:3])
        return [(cid, dict(e.get("call") or {}), str(e.get("error") or "")) for *_, cid, e in kept[:limit]]

    def errors(self) -> dict[str, str]:
        """Every call waiting to be retried → its last error."""
        return {cid: str((_entry(raw) or {}).get("error") or "")
                for cid, raw in sorted(cast(dict[str, str], self.redis.hgetall(self.key)).items())}


def _entry(raw: str | None) -> dict[str, Any] | None:
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
