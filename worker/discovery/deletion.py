"""Delete after archive: remove a file from Stream once every destination has verified it.

A file qualifies only when it has at least one transfer and every one of them is ``archived``
(the transfer verified the stored object's size and checksums before saying so): a file with a
transfer ``skipped`` (routed to ``stream-s3``: "leave it with Stream"), ``queued``, ``failed`` or
``lost`` is never deleted. The deletion is recorded in the file's ledger record
(``deleted_from_stream_at``), so it happens once.

Verified first: just before deleting, each transfer's object must still be the bytes archived
(`Storage.verify`: its size and SHA-256, hashed again where the store keeps none it replaces with
every write). Otherwise nothing of that file is deleted, ``stream_delete_skipped`` says why, and the
transfer is queued again (reason ``object_changed``) to be archived anew.

Held: a file of a call on legal hold (`archiver hold`) is not deleted from Stream (``stream_delete_held``,
counted in ``held``): a hold keeps every copy, Stream's too, until it is released.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import structlog

from worker.compliance.holds import held_calls
from worker.errors import StreamApiError, StreamRefused
from worker.files import Kind, artefact
from worker.ledger.models import Transfer
from worker.ledger.store import Ledger
from worker.runtime import Runtime
from worker.storage import Storage

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Deletable:
    file_id: str
    call_cid: str
    kind: Kind
    filename: str
    session_id: str | None
    destinations: list[str]
    transfers: list[Transfer] = field(default_factory=list, compare=False)


@dataclass
class DeletionSummary:
    candidates: list[Deletable] = field(default_factory=list)
    deleted: int = 0
    already_gone: int = 0
    failed: int = 0
    skipped: int = 0  # an object no longer matched: nothing deleted, its transfer queued again
    held: int = 0  # files of calls on legal hold (`archiver hold`): kept at Stream


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
        kind = artefact(record.get("kind", ""))  # ValueError for a kind this version does not know
        if kind.api_section is None:  # Stream has no endpoint deleting it (frame recordings, stats reports)
            continue
        yield Deletable(transfer.file_id, record["call_cid"], kind.name, record["filename"],
                        record.get("session_id") or None, sorted(t.storage for t in siblings if t),
                        [t for t in siblings if t])


def _session_of(runtime: Runtime, item: Deletable) -> str | None:
    """The file's session id; older records lack it, so ask Stream's listing by filename."""
    if item.session_id:
        return item.session_id
    for listed in runtime.stream.list_files(item.call_cid, item.kind):
        if listed.get("filename") == item.filename and isinstance(listed.get("session_id"), str):
            return str(listed["session_id"])
    return None


def object_problem(storage_of: Callable[[str], Storage], transfer: Transfer) -> tuple[str, bool] | None:
    """Why `transfer`'s object is no longer the bytes it archived (`Storage.verify`; `storage_of`
    gives a storage by name), and whether
    archiving it again is the cure; None when it still is. An error while checking is a reason too
    (nothing is deleted on a guess), but not one to archive again for."""
    if transfer.bytes is None or not transfer.sha256:
        return f"transfer {transfer.id} recorded no size or sha256", True
    try:
        problem = storage_of(transfer.storage).verify(transfer.key, transfer.bytes, transfer.sha256)
    except Exception as exc:  # noqa: BLE001 - unverifiable counts as unverified: keep the file at Stream
        return f"cannot verify {transfer.key} at {transfer.storage}: {exc}", False
    return None if problem is None else (problem, True)


def still_archived(runtime: Runtime, transfers: list[Transfer], context: dict[str, str]) -> bool:
    """True when every transfer's object is still the bytes archived. Otherwise log why, queue the
    changed ones again, and return False."""
    problems = [(t, found) for t in transfers if (found := object_problem(runtime.storage, t))]
    for transfer, (problem, again) in problems:
        requeued = again and runtime.ledger.requeue_archived(transfer.id, problem)
        log.error("stream_delete_skipped", reason=problem, transfer_id=transfer.id, storage=transfer.storage,
                  key=transfer.key, requeued=requeued, **context)
    return not problems


def delete_archived(runtime: Runtime, *, dry_run: bool) -> DeletionSummary:
    """Delete from Stream every file archived everywhere (or, with `dry_run`, only list them)."""
    found = list(deletable_files(runtime.ledger))
    held = held_calls(runtime.ledger, (item.call_cid for item in found))
    summary = DeletionSummary(candidates=[item for item in found if item.call_cid not in held])
    for item in (item for item in found if item.call_cid in held):
        summary.held += 1
        log.info("stream_delete_held", call_cid=item.call_cid, filename=item.filename, file_id=item.file_id,
                 note="the call is on legal hold: its files stay at Stream until the hold is released")
    if dry_run:
        return summary
    for item in summary.candidates:
        context = {"call_cid": item.call_cid, "filename": item.filename, "file_id": item.file_id}
        if not still_archived(runtime, item.transfers, context):
            summary.skipped += 1
            continue
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
