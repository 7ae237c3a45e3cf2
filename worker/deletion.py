"""Delete after archive: remove a file from Stream once every destination has verified it.

A file qualifies only when it has at least one transfer and every one of them is ``archived``
(the transfer verified the stored object's size and checksums before saying so): a file with a
transfer ``skipped`` (routed to ``stream-s3``: "leave it with Stream"), ``queued``, ``failed`` or
``lost`` is never deleted. The deletion is recorded in the file's ledger record
(``deleted_from_stream_at``), so it happens once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import structlog

from worker.errors import StreamApiError, StreamRefused
from worker.files import Kind
from worker.ledger import Ledger
from worker.runtime import Runtime

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Deletable:
    file_id: str
    call_cid: str
    kind: Kind
    filename: str
    session_id: str | None
    destinations: list[str]


@dataclass
class DeletionSummary:
    candidates: list[Deletable] = field(default_factory=list)
    deleted: int = 0
    already_gone: int = 0
    failed: int = 0


def deletable_files(ledger: Ledger) -> Iterator[Deletable]:
    """Files archived and verified at every destination, not yet deleted from Stream."""
    seen: set[str] = set()
    for transfer in ledger.iter_transfers("archived"):
        if transfer.file_id in seen:
            continue
        seen.add(transfer.file_id)
        record = ledger.file(transfer.file_id)
        if not record or record.get("deleted_from_stream_at") or record.get("routing") == "pending":
            continue
        siblings = [ledger.get(tid) for tid in ledger.transfers_of(transfer.file_id)]
        if not siblings or any(t is None or t.state != "archived" for t in siblings):
            continue
        kind: Kind = "transcription" if record.get("kind") == "transcription" else "recording"
        yield Deletable(transfer.file_id, record["call_cid"], kind, record["filename"],
                        record.get("session_id") or None, sorted(t.storage for t in siblings if t))


def _session_of(runtime: Runtime, item: Deletable) -> str | None:
    """The file's session id; older records lack it, so ask Stream's listing by filename."""
    if item.session_id:
        return item.session_id
    for listed in runtime.stream.list_files(item.call_cid, item.kind):
        if listed.get("filename") == item.filename and isinstance(listed.get("session_id"), str):
            return str(listed["session_id"])
    return None


def delete_archived(runtime: Runtime, *, dry_run: bool) -> DeletionSummary:
    """Delete from Stream every file archived everywhere (or, with `dry_run`, only list them)."""
    summary = DeletionSummary(candidates=list(deletable_files(runtime.ledger)))
    if dry_run:
        return summary
    for item in summary.candidates:
        context = {"call_cid": item.call_cid, "filename": item.filename, "file_id": item.file_id}
        try:
            session = _session_of(runtime, item)
            if session is None:
                summary.already_gone += 1
                outcome = "not listed by Stream any more"
            else:
                runtime.stream.delete_file(item.call_cid, item.kind, session, item.filename)
                summary.deleted += 1
                outcome = "deleted"
        except StreamRefused as exc:
            if not exc.gone:
                summary.failed += 1
                log.error("stream_delete_failed", error=str(exc), **context)
                continue
            summary.already_gone += 1
            outcome = "already gone"
        except StreamApiError as exc:
            summary.failed += 1
            log.error("stream_delete_failed", error=str(exc), **context)
            continue
        runtime.ledger.mark_deleted_from_stream(item.file_id, outcome)
        log.info("recording_deleted_from_stream", outcome=outcome, destinations=item.destinations, **context)
    return summary
