"""Routing a waiting file: ask Stream for its call, then record one transfer per destination.

With call-level routing on, intake (`worker.intake.record`) records a file alone, since the receiver
must not ask Stream while Stream waits for its answer; `resolve_file`, run by a task, reads the file
back from the ledger, looks its call up (cached in the ledger) and records its transfers. While
Stream's API is unavailable the file waits, to be tried again after a jittered ``retry_backoff``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from worker.clock import seconds_to_ms
from worker.errors import StreamRefused, StreamUnavailable
from worker.files import StreamFile, artefact
from worker.intake.permits import permitted_call
from worker.intake.record import record_routes
from worker.retry import jittered
from worker.runtime import Runtime

log = structlog.get_logger(__name__)


def stored_file(record: Mapping[str, str]) -> StreamFile:
    """The StreamFile a ledger file record describes (ValueError for a kind this version does not know)."""
    def moment(name: str) -> datetime:
        return datetime.fromtimestamp(int(record[name]) / 1000, UTC)

    return StreamFile(call_cid=record["call_cid"], kind=artefact(record["kind"]).name, filename=record["filename"],
                      url=record["url"], start_time=moment("start_time"), end_time=moment("end_time"),
                      session_id=record.get("session_id") or None,
                      recording_type=record.get("recording_type") or None,
                      egress_id=record.get("egress_id") or None,
                      url_at=moment("url_at") if record.get("url_at") else datetime.fromtimestamp(0, UTC))


def _lookup_call(runtime: Runtime, call_cid: str) -> dict[str, Any] | None:
    cached = runtime.ledger.cached_call(call_cid)
    if cached is not False:
        return cached
    call_type, _, call_id = call_cid.partition(":")
    call = runtime.stream.get_call(call_type, call_id)
    runtime.ledger.cache_call(call_cid, call, seconds_to_ms(runtime.archive.call_cache_ttl.total_seconds()))
    return call


def _is_trial(runtime: Runtime, file: StreamFile, file_id: str) -> bool:
    """Whether `file` is `archiver try`'s sample: its URL holds a one-file permission granted for its
    own call (`worker.intake.permits`), which only `archiver try` writes. Its call does not exist at Stream,
    so call type and default route it at once."""
    if permitted_call(runtime.ledger, file.url) != file.call_cid:
        return False
    log.info("call_lookup_skipped", call_cid=file.call_cid, file_id=file_id,
             reason="archiver try's sample: routed by call type and default")
    return True


def resolve_file(runtime: Runtime, file_id: str) -> list[str]:
    """Find a waiting file's destinations (asking Stream for its call) and record its transfers.

    Returns the transfers to queue. While Stream's API is unavailable the file waits and is tried
    again; past ``call_lookup_timeout`` (or when Stream refuses), call type and default decide, as
    they do at once for `archiver try`'s sample.
    """
    record = runtime.ledger.file(file_id)
    if record.get("routing") != "pending":
        return []
    file, archive = stored_file(record), runtime.archive
    try:
        call = None if _is_trial(runtime, file, file_id) else _lookup_call(runtime, file.call_cid)
    except StreamUnavailable as exc:
        now = runtime.ledger.now_ms()  # Redis wrote created_at: judge the wait by its clock
        waited = now - int(record.get("created_at", now))
        if waited < seconds_to_ms(archive.call_lookup_timeout.total_seconds()):
            delay = seconds_to_ms(jittered(archive.retry_backoff.total_seconds()))
            runtime.ledger.defer_routing(file_id, delay, str(exc))
            log.warning("call_lookup_retry", call_cid=file.call_cid, file_id=file_id, error=str(exc))
            return []
        log.error("call_lookup_gave_up", call_cid=file.call_cid, file_id=file_id, error=str(exc))
        call = None
    except StreamRefused as exc:
        log.error("call_lookup_refused", call_cid=file.call_cid, file_id=file_id, error=str(exc))
        call = None
    recorded = record_routes(archive, runtime.ledger, file, call)
    log.info("file_routed", call_cid=file.call_cid, file_id=file_id, transfer_ids=recorded.transfer_ids)
    return recorded.to_queue
