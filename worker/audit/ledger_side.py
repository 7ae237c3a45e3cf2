"""What the ledger says about the files an audit covers: read in batches (pipelines, no scripts).

The ledger side of an audit's scope is every file with a transfer created in [since, until] (the
``transfers`` index is by creation time), every file waiting for its routes recorded then (the
``unrouted`` index; such a file has no transfer yet), or, for exact calls, the files of the
``call_files`` index. Files older than Stream's retention are in it too: Stream no longer lists
them, but the ledger and the storages can still be compared. Every function raises redis errors.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import cast

from worker.ledger.calls import read_call
from worker.ledger.store import Ledger

BATCH = 500


@dataclass(frozen=True)
class Cursor:
    """Where a walk of the ``transfers`` index stands: the creation time (ms) of the last entry
    taken, and how many entries of exactly that time were taken (ties keep their order)."""

    score: float = float("-inf")
    taken: int = 0

    def to_json(self) -> list[float | int | str]:
        return ["-inf" if self.score == float("-inf") else self.score, self.taken]

    @classmethod
    def from_json(cls, data: object) -> Cursor:
        if not isinstance(data, list) or len(data) != 2:
            return cls()
        return cls(float(data[0]), int(data[1]))


def created_between(ledger: Ledger, since_ms: int, until_ms: int | None, cursor: Cursor,
                    batch: int = BATCH) -> Iterator[tuple[list[str], Cursor]]:
    """The files of the transfers created in [since_ms, until_ms], oldest first, from `cursor` on:
    batches of file ids (a file with several transfers can come in more than one batch), each with
    the cursor after it."""
    top: float | str = "+inf" if until_ms is None else until_ms
    while True:
        low = max(float(since_ms), cursor.score)
        entries = cast(list[tuple[str, float]], ledger.redis.zrangebyscore(
            ledger.keys.transfers, low, top, start=cursor.taken if low == cursor.score else 0, num=batch,
            withscores=True))
        if not entries:
            return
        cursor = _advance(cursor, entries)
        pipe = ledger.redis.pipeline(transaction=False)
        for tid, _ in entries:
            pipe.hget(ledger.keys.transfer(tid), "file_id")
        file_ids = list(dict.fromkeys(fid for fid in cast(list[str | None], pipe.execute()) if fid))
        yield file_ids, cursor
        if len(entries) < batch:
            return


def _advance(cursor: Cursor, entries: list[tuple[str, float]]) -> Cursor:
    last = entries[-1][1]
    same = sum(1 for _, score in entries if score == last)
    return Cursor(last, cursor.taken + same if last == cursor.score else same)


def waiting_between(ledger: Ledger, since_ms: int, until_ms: int | None) -> list[str]:
    """The files waiting for their routes that were recorded in [since_ms, until_ms] (usually a
    handful: a file waits at most `call_lookup_timeout`)."""
    fids = cast(list[str], ledger.redis.zrange(ledger.keys.unrouted, 0, -1))
    pipe = ledger.redis.pipeline(transaction=False)
    for fid in fids:
        pipe.hget(ledger.keys.file(fid), "created_at")
    found = []
    for fid, created in zip(fids, cast(list[str | None], pipe.execute()), strict=True):
        if created and int(created) >= since_ms and (until_ms is None or int(created) <= until_ms):
            found.append(fid)
    return sorted(found)


def files_of_calls(ledger: Ledger, calls: Sequence[str]) -> list[str]:
    """The ids of every file the ledger holds of `calls` (cids), from the ``call_files`` index."""
    return [f.id for cid in calls for f in read_call(ledger, cid, limit=None).files]
