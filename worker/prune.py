"""Housekeeping: forget transfers archived long ago (`archiver transfers prune`).

Only `archived` transfers are ever pruned, one atomic script each (`ledger_scripts.PRUNE`, which
checks the state again inside Redis, so a transfer retried or changed meanwhile is left alone). A
transfer goes when it was archived before the cutoff *and* Stream's deletion deadline for its file
(`expires_at`) has passed: while Stream still lists a file, a reconciliation or a late webhook would
record it, and upload it, again. A file's record goes with the last of its transfers; a file with
any transfer not archived (queued, transferring, failed, lost, skipped) keeps its record, and those
transfers are never touched.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from worker import ledger_scripts as lua
from worker.ledger import Ledger, now_ms

BATCH = 500


@dataclass
class PruneSummary:
    """What a prune did (or, with `dry_run`, would do)."""

    cutoff_ms: int
    dry_run: bool
    transfers: int = 0  # pruned (or prunable)
    files: int = 0  # file records removed (or removable)
    outcomes: Counter[str] = field(default_factory=Counter)  # every script answer, by status

    @property
    def kept_at_stream(self) -> int:
        """Archived before the cutoff, but Stream still holds the file: kept."""
        return self.outcomes["at_stream"]


def prune_archived(ledger: Ledger, older_than: timedelta, *, dry_run: bool = False,
                   now: int | None = None, batch: int = BATCH) -> PruneSummary:
    """Forget `archived` transfers finished more than `older_than` ago (see the module docstring).
    Raises redis errors; what was pruned before an error stays pruned (each transfer is one step)."""
    now = now_ms() if now is None else now
    summary = PruneSummary(cutoff_ms=now - int(older_than.total_seconds() * 1000), dry_run=dry_run)
    script = ledger.redis.register_script(lua.PRUNE)
    candidates = cast(list[str], ledger.redis.zrangebyscore(f"{ledger.prefix}state:archived", "-inf",
                                                            summary.cutoff_ms))
    prunable: dict[str, set[str]] = {}  # dry run: file id -> its prunable transfers
    for start in range(0, len(candidates), batch):
        chunk = candidates[start:start + batch]
        pipe = ledger.redis.pipeline(transaction=False)  # one round trip per batch; each script is atomic
        for tid in chunk:
            script(args=[ledger.prefix, tid, summary.cutoff_ms, now, "1" if dry_run else "0"], client=pipe)
        for tid, (status, file_id, file_deleted) in zip(chunk, cast(list[list[Any]], pipe.execute()), strict=True):
            summary.outcomes[str(status)] += 1
            if status in ("pruned", "would_prune"):
                summary.transfers += 1
                summary.files += int(file_deleted)
                if dry_run:
                    prunable.setdefault(str(file_id), set()).add(tid)
    if dry_run:
        summary.files = _files_that_would_go(ledger, prunable, batch)
    return summary


def _files_that_would_go(ledger: Ledger, prunable: dict[str, set[str]], batch: int) -> int:
    """How many file records pruning `prunable` (file id -> its prunable transfers) would remove:
    those whose every transfer is prunable (dry run)."""
    count, file_ids = 0, list(prunable)
    for start in range(0, len(file_ids), batch):
        chunk = file_ids[start:start + batch]
        pipe = ledger.redis.pipeline(transaction=False)
        for fid in chunk:
            pipe.hget(f"{ledger.prefix}file:{fid}", "routing")
            pipe.smembers(f"{ledger.prefix}file:{fid}:transfers")
        replies = pipe.execute()
        for fid, routing, members in zip(chunk, replies[0::2], replies[1::2], strict=True):
            count += routing != "pending" and set(cast(set[str], members)) <= prunable[fid]
    return count
