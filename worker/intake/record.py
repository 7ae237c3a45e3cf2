"""From a verified ready event to ledger entries: one file, one transfer per destination.

With call-level routing on (``call_storage_key`` set, the default), the receiver cannot know the
destinations without asking Stream for the call, which it must not do while Stream waits for its
answer: it records the file alone, and `worker.intake.resolve.resolve_file` (run by a task) records
the transfers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from config import ArchiveConfig, Settings
from worker.clock import now_ms, seconds_to_ms
from worker.errors import MalformedPayload
from worker.files import Kind, StreamFile, failed_artefact, ready_artefact, transfer_id
from worker.intake.object_keys import object_key
from worker.intake.routing import route
from worker.intake.webhook import authenticate, decompress, parse_event, ready_file
from worker.ledger.index import custom_terms
from worker.ledger.models import NewTransfer
from worker.ledger.store import Ledger
from worker.notify.outbox import Outbox

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Recorded:
    """What intake did: `new_file` decides 202 vs 200; the ids are what to hand to the workers now."""

    file_id: str
    new_file: bool
    transfer_ids: list[str]
    to_queue: list[str] = field(default_factory=list)  # transfers just created, and files to route
    kind: Kind | None = None  # the file's (for the count of files received by kind)


@dataclass(frozen=True)
class Expired:
    """A ready event for a file past its deadline (it ended longer than `retention` ago): Stream has
    deleted it, so it is a replayed delivery or one held back that long. Nothing is recorded."""

    file_id: str
    call_cid: str
    expires_at: datetime


def enqueue_quietly(enqueue: Callable[[Sequence[str]], None], ids: Sequence[str]) -> None:
    """Hand ids to the workers after they are recorded; a failure is only logged (the scheduler's
    sweep queues whatever is due, so nothing recorded is lost)."""
    if not ids:
        return
    try:
        enqueue(ids)
    except Exception as exc:  # noqa: BLE001 - best effort by design: the ledger already holds them
        log.warning("transfer_enqueue_failed", transfer_ids=list(ids), error=str(exc))


def plan_transfers(archive: ArchiveConfig, file: StreamFile, call: Mapping[str, Any] | None = None
                   ) -> list[NewTransfer]:
    """One transfer per destination the routing rules give `file`."""
    key = object_key(archive.key_template, file)
    return [
        NewTransfer(
            id=transfer_id(file.file_id, r.storage),
            storage=r.storage,
            key="" if r.skip_reason else key,
            state="skipped" if r.skip_reason else "queued",
            error=r.skip_reason,
        )
        for r in route(archive, file, call)
    ]


def record_routes(archive: ArchiveConfig, ledger: Ledger, file: StreamFile,
                  call: Mapping[str, Any] | None = None) -> Recorded:
    """Record `file` with its transfers (`call`: its call object, from GetCall or QueryCalls, for
    call-level routing; its custom data is indexed for `archiver find` too)."""
    recorded = _record_routes(archive, ledger, file, call)
    assert isinstance(recorded, Recorded)  # refuse_expired is off
    return recorded


def _record_routes(archive: ArchiveConfig, ledger: Ledger, file: StreamFile, call: Mapping[str, Any] | None = None,
                   *, refuse_expired: bool = False) -> Recorded | Expired:
    transfers = plan_transfers(archive, file, call)
    intake = ledger.record(file, transfers, expires_at=file.expires_at(archive.retention),
                           dispatch_in_ms=seconds_to_ms(archive.redispatch_after.total_seconds()),
                           refuse_expired=refuse_expired, custom=None if call is None else custom_terms(call))
    if intake.expired:
        return Expired(file.file_id, file.call_cid, file.expires_at(archive.retention))
    if intake.erased:
        return _erased(file)
    queued = [t.id for t in transfers if t.state == "queued"] if intake.transfers_created else []
    return Recorded(file.file_id, intake.file_is_new, [t.id for t in transfers], queued, file.kind)


def record_file(archive: ArchiveConfig, ledger: Ledger, file: StreamFile, *,
                refuse_expired: bool = False) -> Recorded | Expired:
    """Record a delivered file: with its transfers, or, with call-level routing, to be routed.
    With `refuse_expired`, a file past its deadline (by Redis's clock) is not recorded (`Expired`)."""
    if not archive.call_storage_key:
        return _record_routes(archive, ledger, file, refuse_expired=refuse_expired)
    intake = ledger.record(file, [], expires_at=file.expires_at(archive.retention),
                           route_in_ms=seconds_to_ms(archive.redispatch_after.total_seconds()),
                           refuse_expired=refuse_expired)
    if intake.expired:
        return Expired(file.file_id, file.call_cid, file.expires_at(archive.retention))
    if intake.erased:
        return _erased(file)
    return Recorded(file.file_id, intake.file_is_new, [], [file.file_id] if intake.file_is_new else [], file.kind)


def _erased(file: StreamFile) -> Recorded:
    """`archiver erase` erased this file (``erased:<fid>``): nothing was recorded, nothing is queued."""
    log.info("erased_file_not_recorded", file_id=file.file_id, call_cid=file.call_cid, filename=file.filename)
    return Recorded(file.file_id, False, [], [], file.kind)


@dataclass(frozen=True)
class FailureNoted:
    """A `call.recording_failed` / `call.transcription_failed` event, kept in the ledger."""

    call_cid: str
    kind: Kind
    to_queue: list[str] = field(default_factory=list)  # the notifications it announced (stream.failure)


def note_failure(ledger: Ledger, event: Mapping[str, Any]) -> FailureNoted:
    """Keep Stream's word that a recording or transcription will never arrive, and say it loudly."""
    kind = failed_artefact(str(event["type"]))
    if kind is None:
        raise MalformedPayload(f"type: {event['type']!r} is not a failure event")
    call_cid = str(event.get("call_cid") or "")
    if ":" not in call_cid:
        raise MalformedPayload(f"call_cid: {call_cid!r} is not '<type>:<id>'")
    record = {"call_cid": call_cid, "kind": kind.name, "egress_id": event.get("egress_id"),
              "recording_type": event.get("recording_type"), "error": event.get("error"),
              "created_at": event.get("created_at"), "noted_at": now_ms()}
    to_queue: list[str] = []
    if ledger.note_failure(record):
        log.error(kind.failed_log_event, call_cid=call_cid, egress_id=record["egress_id"], error=record["error"],
                  note=f"Stream reports this {kind.name} failed: it will never arrive")
        if ledger.outbox:
            subject = ledger.failure_marker(record).removeprefix(ledger.prefix)
            to_queue = Outbox(ledger).due_for("stream.failure", subject)
    return FailureNoted(call_cid, kind.name, to_queue)


def record_event(settings: Settings, ledger: Ledger, event: Mapping[str, Any]
                 ) -> Recorded | FailureNoted | Expired | str:
    """Record one authenticated Stream event (from the webhook or SQS): a ready file, a failure, or
    (returned as its type) an event the archiver ignores: one of no kind, or of a kind not in the
    `kinds` setting. A ready file that ended longer than `retention` ago is not recorded (`Expired`):
    Stream deleted it, and a signed delivery replayed later must not create a transfer doomed to be
    `lost`. Raises MalformedPayload, redis errors."""
    event_type = str(event["type"])
    failed = failed_artefact(event_type)
    kind = failed or ready_artefact(event_type)
    if kind is None or kind.name not in settings.archive.kinds:
        return event_type
    if failed is not None:
        return note_failure(ledger, event)
    file = ready_file(event)
    assert file is not None
    return record_file(settings.archive, ledger, file, refuse_expired=True)


def accept_delivery(settings: Settings, ledger: Ledger, body: bytes,
                    headers: Mapping[str, str]) -> Recorded | FailureNoted | Expired | str:
    """Check and record one webhook delivery (see `record_event`).

    Raises InvalidWebhook subclasses (nothing recorded) and redis errors (nothing answered 2xx).
    """
    raw = decompress(body, headers.get("content-encoding"))
    env = settings.env
    authenticate(raw, headers, env.stream_api_key, env.stream_api_secrets)
    return record_event(settings, ledger, parse_event(raw))
