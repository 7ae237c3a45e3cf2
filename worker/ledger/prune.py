"""Housekeeping: forget transfers archived long ago (`archiver transfers prune`).

Only `archived` transfers are ever pruned, one atomic script each (`ledger_scripts.PRUNE`, which
checks the state again inside Redis, so a transfer retried or changed meanwhile is left alone). A
transfer goes when it was archived before the cutoff *and* Stream's deletion deadline for its file
(`expires_at`) has passed: while Stream still lists a file, a reconciliation or a late webhook would
record it, and upload it, again. A file's record goes with the last of its transfers; a file with
any transfer not archived (queued, transferring, failed, lost, skipped) keeps its record, and those
transfers are never touched. `archiver transfers prune` first checks each object is still the bytes
archived (`worker.discovery.deletion.object_problem`): the entry of one that is not is kept. A transfer
of a call on legal hold (`archiver hold`, ``hold:<cid>``) is never pruned (outcome ``held``; the script
checks the hold itself, so a hold placed meanwhile counts). Each transfer pruned leaves an audit-log
entry (action prune), written by the same script.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import structlog

from worker.ledger import scripts as lua
from worker.ledger.models import Transfer
from worker.ledger.store import Ledger

BATCH = 500
log = structlog.get_logger(__name__)


@dataclass
class PruneSummary:
    """What a prune did (or, with `dry_run`, would do)."""

    cutoff_ms: int
    dry_run: bool
    transfers: int = 0  # pruned (or prunable)
    files: int = 0  # file records removed (or removable)
    outcomes: Counter[str] = field(default_factory=Counter)  # every script answer, by status

    @property
    def held(self) -> int:
        """Archived before the cutoff, but a legal hold on its call (`archiver hold`) keeps it."""
        return self.outcomes["held"]

    @property
    def kept_at_stream(self) -> int:
        """Archived before the cutoff, but Stream still holds the file: kept."""
        return self.outcomes["at_stream"]


def prune_archived(ledger: Ledger, older_than: timedelta, *, dry_run: bool = False,
                   now: int | None = None, batch: int = BATCH,
                   check: Callable[[Transfer], str | None] | None = None) -> PruneSummary:
    """Forget `archived` transfers finished more than `older_than` ago (see the module docstring).
    With `check` (why a transfer's object is no longer the bytes archived, or None), a transfer whose
    object fails it is kept (outcome ``object_changed``, logged ``prune_skipped``), and so is its file.
    Raises redis errors; what was pruned before an error stays pruned (each transfer is one step)."""
    now = ledger.now_ms() if now is None else now  # Redis's clock, which wrote every updated_at
    summary = PruneSummary(cutoff_ms=now - int(older_than.total_seconds() * 1000), dry_run=dry_run)
    script = ledger.redis.register_script(lua.PRUNE)
    candidates = cast(list[str], ledger.redis.zrangebyscore(ledger.keys.state("archived"), "-inf", summary.cutoff_ms))
    prunable: dict[str, set[str]] = {}  # dry run: file id -> its prunable transfers
    for start in range(0, len(candidates), batch):
        chunk = candidates[start:start + batch]
        if check is not None:  # only what the script would prune is worth reading back
            chunk = _passing(ledger, _run(ledger, script, chunk, summary, now, dry=True, count=False), check,
                             summary)
        for tid, (status, file_id, file_deleted) in _run(ledger, script, chunk, summary, now, dry=dry_run):
            if status in ("pruned", "would_prune"):
                summary.transfers += 1
                summary.files += int(file_deleted)
                if dry_run:
                    prunable.setdefault(str(file_id), set()).add(tid)
    if dry_run:
        summary.files = _files_that_would_go(ledger, prunable, batch)
    return summary


def _run(ledger: Ledger, script: Any, chunk: list[str], summary: PruneSummary, now: int, *, dry: bool,
         count: bool = True) -> list[tuple[str, list[Any]]]:
    """The PRUNE script's answer for each transfer of `chunk`, in one round trip (each script atomic);
    with `count`, every answer is counted in ``summary.outcomes``."""
    pipe = ledger.redis.pipeline(transaction=False)
    for tid in chunk:
        script(args=[ledger.prefix, tid, summary.cutoff_ms, now, "1" if dry else "0", ledger.actor], client=pipe)
    answers = list(zip(chunk, cast(list[list[Any]], pipe.execute()), strict=True))
    if count:
        summary.outcomes.update(str(answer[0]) for _, answer in answers)
    return answers


def _passing(ledger: Ledger, answers: list[tuple[str, list[Any]]], check: Callable[[Transfer], str | None],
             summary: PruneSummary) -> list[str]:
    """Of the transfers the script would prune, those whose object passes `check`; any other answer
    goes on to the script as well, which gives it again."""
    passing = []
    for tid, (status, _, _) in answers:
        transfer = ledger.get(tid) if status == "would_prune" else None
        problem = check(transfer) if transfer is not None else None
        if problem is None:
            passing.append(tid)
            continue
        summary.outcomes["object_changed"] += 1
        log.error("prune_skipped", transfer_id=tid, file_id=transfer.file_id if transfer else "", reason=problem)
    return passing


def _files_that_would_go(ledger: Ledger, prunable: dict[str, set[str]], batch: int) -> int:
    """How many file records pruning `prunable` (file id -> its prunable transfers) would remove:
    those whose every transfer is prunable (dry run)."""
    count, file_ids = 0, list(prunable)
    for start in range(0, len(file_ids), batch):
        chunk = file_ids[start:start + batch]
        pipe = ledger.redis.pipeline(transaction=False)
        for fid in chunk:
            pipe.hget(ledger.keys.file(fid), "routing")
            pipe.smembers(ledger.keys.file_transfers(fid))
        replies = pipe.execute()
        for fid, routing, members in zip(chunk, replies[0::2], replies[1::2], strict=True):
            count += routing != "pending" and set(cast(set[str], members)) <= prunable[fid]
    return count
