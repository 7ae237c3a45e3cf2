"""Files waiting for their routes, made visible: rows for the CLI, figures for /metrics and the page.

With call-level routing a delivered file is recorded without transfers and waits in the ledger's
``unrouted`` index until Stream's GetCall answers (or ``call_lookup_timeout`` passes). It has no
storage yet, so it is no transfer; `archiver transfers list` shows it as a row in the state
``routing``, with the file's id as the row's id and the reason it waits as its error.

Reasons (bounded: also a metric label):
  call_lookup_pending  not looked up yet, or the first lookup is running
  call_lookup_failed   the last lookup failed (Stream unreachable, 5xx): tried again with backoff
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import redis

from worker.clock import from_ms, rfc3339
from worker.ledger.keys import DEFAULT_PREFIX
from worker.ledger.models import ROUTING
from worker.ledger.store import Ledger
from worker.monitoring.tally import CHUNK  # members per script call: the same few milliseconds of Redis

REASONS: tuple[str, ...] = ("call_lookup_pending", "call_lookup_failed")
PENDING_TEXT = "waiting for Stream's call data (GetCall) to choose its storages"
_FIELDS = ("routing", "call_cid", "kind", "filename", "session_id", "expires_at", "created_at",
           "routing_error", "routing_attempts", "routing_tried_at")

# ARGV: prefix, low rank, high rank  ->  {files seen, pending, failed, oldest created_at ('' if none)}
_COUNT = """
local p = ARGV[1]
local ids = redis.call('ZRANGE', p .. 'unrouted', tonumber(ARGV[2]), tonumber(ARGV[3]))
local pending, failed, oldest, oldest_raw = 0, 0, nil, ''
for _, fid in ipairs(ids) do
  local f = redis.call('HMGET', p .. 'file:' .. fid, 'routing', 'routing_error', 'created_at')
  if f[1] == 'pending' then
    if f[2] and f[2] ~= '' then failed = failed + 1 else pending = pending + 1 end
    local created = tonumber(f[3] or '')
    if created and (oldest == nil or created < oldest) then oldest, oldest_raw = created, f[3] end
  end
end
return {#ids, pending, failed, oldest_raw}
"""


@dataclass(frozen=True)
class WaitingFile:
    """One file waiting for its routes, shaped like a transfer row (`Transfer.to_json`'s keys)."""

    file_id: str
    call_cid: str
    kind: str
    filename: str
    session_id: str | None
    error: str | None  # the last failed lookup's error
    attempts: int  # failed lookups so far
    created_at: datetime | None
    tried_at: datetime | None
    next_attempt_at: datetime | None
    expires_at: datetime | None

    @property
    def reason(self) -> str:
        return "call_lookup_failed" if self.error else "call_lookup_pending"

    @classmethod
    def from_fields(cls, file_id: str, fields: dict[str, str], due_ms: float | None) -> WaitingFile:
        def opt(name: str) -> str | None:
            return fields.get(name) or None

        return cls(file_id=file_id, call_cid=fields.get("call_cid", ""), kind=fields.get("kind", ""),
                   filename=fields.get("filename", ""), session_id=opt("session_id"), error=opt("routing_error"),
                   attempts=int(fields.get("routing_attempts") or 0), created_at=from_ms(opt("created_at")),
                   tried_at=from_ms(opt("routing_tried_at")),
                   next_attempt_at=None if due_ms is None else from_ms(int(due_ms)),
                   expires_at=from_ms(opt("expires_at")))

    def to_json(self) -> dict[str, Any]:
        """The row of `archiver transfers list --json`: state ``routing``, no storage, no key; `error`
        says why it waits; `updated_at` is the last failed lookup (else when it was recorded)."""
        return {
            "id": self.file_id, "call_cid": self.call_cid, "session_id": self.session_id, "kind": self.kind,
            "filename": self.filename, "storage": None, "key": None, "replaced_key": None, "state": ROUTING,
            "bytes": None,
            "sha256": None, "attempts": self.attempts, "error": self.error or PENDING_TEXT, "reason": self.reason,
            "expires_at": rfc3339(self.expires_at), "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.tried_at or self.created_at),
            "next_attempt_at": rfc3339(self.next_attempt_at), "file_id": self.file_id,
        }


def waiting_files(ledger: Ledger, file_ids: Iterable[str] | None = None, batch: int = 500) -> list[WaitingFile]:
    """The files waiting for their routes (or those of `file_ids` that do), oldest first."""
    key = ledger.keys.unrouted
    if file_ids is None:
        scored = [(str(fid), float(score)) for fid, score in
                  cast(list[tuple[str, float]], ledger.redis.zrange(key, 0, -1, withscores=True))]
    else:
        ids = list(file_ids)
        scores: list[float | None] = ledger.redis.zmscore(key, ids) if ids else []
        scored = [(fid, score) for fid, score in zip(ids, scores, strict=True) if score is not None]
    found: list[WaitingFile] = []
    for start in range(0, len(scored), batch):
        chunk = scored[start:start + batch]
        pipe = ledger.redis.pipeline(transaction=False)
        for fid, _ in chunk:
            pipe.hmget(ledger.keys.file(fid), list(_FIELDS))
        for (fid, due), values in zip(chunk, pipe.execute(), strict=True):
            fields = {k: str(v) for k, v in zip(_FIELDS, values, strict=True) if v is not None}
            if fields.get("routing") == "pending":
                found.append(WaitingFile.from_fields(fid, fields, due))
    return sorted(found, key=lambda w: (w.created_at.timestamp() if w.created_at else 0.0, w.file_id))


def by_creation(*rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """JSON rows from sources each sorted by `created_at` (RFC 3339, one format), merged oldest first."""
    return heapq.merge(*rows, key=lambda row: row.get("created_at") or "")


@dataclass(frozen=True)
class RoutingFigures:
    """How many files wait for their routes, by reason, and since when the oldest has waited."""

    by_reason: dict[str, int]
    oldest_created_ms: int | None

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())

    def oldest_age(self, now: float) -> float:
        """Seconds the oldest waiting file has waited (0 when none)."""
        return 0.0 if self.oldest_created_ms is None else max(0.0, now - self.oldest_created_ms / 1000)


def read_routing(client: redis.Redis, prefix: str = DEFAULT_PREFIX) -> RoutingFigures:
    """Count the waiting files inside Redis, `CHUNK` at a time: only the counts cross the network."""
    script = client.register_script(_COUNT)
    pending = failed = start = 0
    oldest: int | None = None
    while True:
        seen, more_pending, more_failed, first = cast(list[Any], script(args=[prefix, start, start + CHUNK - 1]))
        pending, failed = pending + int(more_pending), failed + int(more_failed)
        if first not in ("", b""):
            oldest = int(first) if oldest is None else min(oldest, int(first))
        if int(seen) < CHUNK:
            return RoutingFigures({"call_lookup_pending": pending, "call_lookup_failed": failed}, oldest)
        start += CHUNK


def listed_rows(ledger: Ledger, state: str | None = None) -> Iterator[dict[str, Any]]:
    """The rows of `archiver transfers list` (JSON shape): transfers in `state`, or with no state
    every transfer and every waiting file, oldest first; state ``routing``: the waiting files."""
    if state == ROUTING:
        return iter([w.to_json() for w in waiting_files(ledger)])
    transfers = (t.to_json() for t in ledger.iter_transfers(state))
    if state is not None:
        return transfers
    return by_creation(transfers, [w.to_json() for w in waiting_files(ledger)])
