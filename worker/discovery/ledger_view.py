"""What the ledger already knows about discovered files, and which files are at risk.

Read-only batched reads (pipelines, no scripts): a discovery run asks about one call's files at a
time; the at-risk scan reads the ``expiry`` index (unfinished transfers by deletion time) and the
``unrouted`` index (files waiting for their routes). Every function raises redis errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from worker.discovery.model import AtRiskFile
from worker.ledger.store import Ledger

UNFINISHED = frozenset({"queued", "transferring"})
CHUNK = 1000


@dataclass(frozen=True)
class FileView:
    """One file as the ledger has it (`known` False: never recorded)."""

    known: bool
    routing_pending: bool = False
    states: tuple[str, ...] = ()
    archived_bytes: int = 0
    expires_at_ms: int | None = None


def view_files(ledger: Ledger, file_ids: Sequence[str]) -> dict[str, FileView]:
    """What the ledger holds for each of `file_ids` (two round trips)."""
    keys = ledger.keys
    pipe = ledger.redis.pipeline(transaction=False)
    for fid in file_ids:
        pipe.hmget(keys.file(fid), ["call_cid", "routing", "expires_at"])
        pipe.smembers(keys.file_transfers(fid))
    replies = pipe.execute()
    heads = dict(zip(file_ids, replies[0::2], strict=True))
    members = {fid: sorted(cast(set[str], tids)) for fid, tids in zip(file_ids, replies[1::2], strict=True)}
    pipe = ledger.redis.pipeline(transaction=False)
    for fid in file_ids:
        for tid in members[fid]:
            pipe.hmget(keys.transfer(tid), ["state", "bytes"])
    rows = iter(pipe.execute())
    return {fid: _view(heads[fid], [next(rows) for _ in members[fid]]) for fid in file_ids}


def _view(head: list[str | None], transfers: list[list[str | None]]) -> FileView:
    call_cid, routing, expires = head
    if call_cid is None:
        return FileView(known=False)
    states = tuple(state or "" for state, _ in transfers)
    archived = sum(int(size or 0) for state, size in transfers if state == "archived")
    return FileView(True, routing == "pending", states, archived, int(expires) if expires else None)


def order_by_expiry(ledger: Ledger, transfer_ids: Sequence[str]) -> list[str]:
    """`transfer_ids` soonest to expire first (the ledger's ``expiry`` index; ids no longer in it,
    finished meanwhile, go last)."""
    scores: dict[str, float] = {}
    for start in range(0, len(transfer_ids), CHUNK):
        chunk = list(transfer_ids[start:start + CHUNK])
        found = ledger.redis.zmscore(ledger.keys.expiry, chunk)
        scores.update({tid: float("inf") if score is None else score for tid, score in zip(chunk, found, strict=True)})
    return sorted(scores, key=lambda tid: (scores[tid], tid))


def at_risk_files(ledger: Ledger, deadline_ms: int, now_ms: int) -> list[AtRiskFile]:
    """Files Stream deletes before `deadline_ms` with a transfer queued or running, or still waiting
    for their routes: soonest first, one entry per file."""
    found = _waiting_transfers(ledger, deadline_ms, now_ms) + _waiting_routes(ledger, deadline_ms, now_ms)
    return sorted(found, key=lambda f: (f.expires_at, f.file_id))


def _waiting_transfers(ledger: Ledger, deadline_ms: int, now_ms: int) -> list[AtRiskFile]:
    tids = cast(list[str], ledger.redis.zrangebyscore(ledger.keys.expiry, "-inf", deadline_ms))
    pipe = ledger.redis.pipeline(transaction=False)
    for tid in tids:
        pipe.hmget(ledger.keys.transfer(tid),
                   ["file_id", "call_cid", "kind", "filename", "storage", "state", "expires_at"])
    by_file: dict[str, list[list[Any]]] = {}
    for tid, row in zip(tids, pipe.execute(), strict=True):
        if row[0] and row[5] in UNFINISHED and row[6]:
            by_file.setdefault(row[0], []).append([*row, tid])
    return [_at_risk(rows, now_ms) for rows in by_file.values()]


def _at_risk(rows: list[list[Any]], now_ms: int) -> AtRiskFile:
    file_id, call_cid, kind, filename, _, _, expires, _ = rows[0]
    states = {row[5] for row in rows}
    state = "transferring" if "transferring" in states else "queued"
    return AtRiskFile(file_id, call_cid or "", kind or "", filename or "", tuple(sorted(row[4] or "" for row in rows)),
                      state, _moment(int(expires)), timedelta(milliseconds=int(expires) - now_ms),
                      tuple(sorted(row[7] for row in rows)))


def _waiting_routes(ledger: Ledger, deadline_ms: int, now_ms: int) -> list[AtRiskFile]:
    fids = cast(list[str], ledger.redis.zrange(ledger.keys.unrouted, 0, -1))
    pipe = ledger.redis.pipeline(transaction=False)
    for fid in fids:
        pipe.hmget(ledger.keys.file(fid), ["call_cid", "kind", "filename", "expires_at", "routing"])
    found = []
    for fid, (call_cid, kind, filename, expires, routing) in zip(fids, pipe.execute(), strict=True):
        if routing == "pending" and expires and int(expires) <= deadline_ms:
            found.append(AtRiskFile(fid, call_cid or "", kind or "", filename or "", (), "routing",
                                    _moment(int(expires)), timedelta(milliseconds=int(expires) - now_ms)))
    return found


def _moment(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def publish_at_risk(ledger: Ledger, count: int, computed_at_ms: int, transfer_ids: Sequence[str] = ()) -> None:
    """Keep the at-risk count where monitoring reads it: ``at_risk`` (files) and ``at_risk_at`` (ms);
    ``file.at_risk`` is announced for `transfer_ids` in the same step."""
    ledger.publish_at_risk(count, computed_at_ms, transfer_ids)
