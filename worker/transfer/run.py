"""One transfer: claim it, stream the file from Stream into its storage, verify, record.

The bytes go from the download straight into the storage writer, in chunks (`worker.transfer.stream_copy`): never
the whole file in memory, never a temporary copy on local disk (a stats report, which Stream's API
serves itself, is small and fetched whole: `worker.transfer.api_source`); an expired URL is refreshed from
Stream and a broken download resumed, a few times per attempt. Size and SHA-256 are computed on
the way; the download must match its Content-Length and the stored object its size. Writes are
create-only: an object already at the key counts as archived when it holds the same bytes, and fails
the transfer (``key_taken``) otherwise (`worker.transfer.taken`); only a transfer queued again because
its object was found missing or damaged (`Transfer.replaces`) may replace it, and where a retention
period or a hold forbids that, its copy goes to a new key the ledger records (`worker.transfer.relocate`).
Transient errors put
the transfer back to ``queued`` with a capped, jittered, exponential wait kept in the ledger (not
in a Celery countdown); permanent ones make it ``failed``; a file the source no longer has after
its deletion deadline is ``lost``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import structlog

from config.logging import scrub
from worker.clock import from_ms, rfc3339, to_ms
from worker.errors import (
    CopyRefused,
    KeyTaken,
    LeaseLost,
    ObjectLocked,
    PermanentError,
    SourceMissing,
    TransientError,
    VerificationFailed,
)
from worker.files import artefact, content_type_for
from worker.ledger.lease import Heartbeat
from worker.ledger.models import Transfer
from worker.retry import backoff, jittered
from worker.runtime import Runtime
from worker.sessions.manifest import Manifests
from worker.storage import Storage
from worker.storage.checksums import Digests, Hasher
from worker.transfer import api_source
from worker.transfer.download import source_size
from worker.transfer.refresh import SignedUrl
from worker.transfer.relocate import relocate
from worker.transfer.stream_copy import CopyJob, Recoveries, stream_copy, with_fresh_url

log = structlog.get_logger(__name__)
STORAGE_BUSY_WAIT_MS = 3000  # a claim refused by a storage's max_concurrency is due again within this
# A transfer that moved no byte for this many read timeouts (and at least STALL_LEASES leases) is
# stuck: its heartbeat stops renewing the lease, so another worker takes it over (`worker.ledger.lease`).
STALL_READ_TIMEOUTS = 10
STALL_LEASES = 3


@dataclass(frozen=True)
class Copied:
    bytes: int
    sha256: str


def concurrency_limits(runtime: Runtime) -> dict[str, int]:
    """Each storage's `max_concurrency`, for the ledger's claim (storages without one are absent)."""
    return {s.name: s.max_concurrency for s in runtime.archive.effective_storages() if s.max_concurrency}


def stall_ms(runtime: Runtime, lease_ms: int) -> int:
    """How long a transfer may move no byte before it counts as stuck."""
    read_timeout_ms = int(runtime.archive.transfer.read_timeout.total_seconds() * 1000)
    return max(STALL_READ_TIMEOUTS * read_timeout_ms, STALL_LEASES * lease_ms)


def run_transfer(runtime: Runtime, transfer_id: str) -> str:
    """Run `transfer_id` if it is due and nobody else runs it; return what happened.

    Safe to call again for a transfer another worker runs (a message delivered twice, e.g. once
    more after the broker's visibility timeout): its live lease makes this call do nothing."""
    lease_ms = int(runtime.archive.transfer_lease.total_seconds() * 1000)
    claim = runtime.ledger.claim(transfer_id, runtime.owner, lease_ms, limits=concurrency_limits(runtime),
                                 busy_wait_ms=int(jittered(STORAGE_BUSY_WAIT_MS)))
    if claim.status == "storage_busy":  # the ledger made it due again shortly; the sweep re-sends it
        log.info("transfer_waiting_for_storage", transfer_id=transfer_id)
        return claim.status
    if not claim.claimed:
        log.info("transfer_not_claimed", transfer_id=transfer_id, status=claim.status)
        return claim.status
    transfer = runtime.ledger.get(transfer_id)
    assert transfer is not None  # claimed a moment ago; transfers are never deleted while live
    with structlog.contextvars.bound_contextvars(
        transfer_id=transfer_id, call_cid=transfer.call_cid, storage=transfer.storage
    ):
        return _run_claimed(runtime, transfer, claim.token, lease_ms)


def _run_claimed(runtime: Runtime, transfer: Transfer, token: str, lease_ms: int) -> str:
    ledger = runtime.ledger
    log.info("transfer_started", attempt=transfer.attempts, key=transfer.key)
    started = time.monotonic()
    lease = Heartbeat(ledger, transfer.id, token, lease_ms, stall_ms=stall_ms(runtime, lease_ms))
    try:
        with lease:
            try:
                copied = _copy(runtime, transfer, lease)
            except ObjectLocked as locked:
                if not transfer.replaces:
                    raise
                transfer = relocate(runtime, transfer, token, locked)  # the damaged object stays; a new key
                copied = _copy(runtime, transfer, lease)
            lease.check()
    except LeaseLost as exc:
        log.warning("transfer_lease_lost", reason=str(exc))
        return "lease_lost"
    except Exception as exc:  # noqa: BLE001 - anything else is retried: losing a file is worse
        if lease.lost:  # taken over meanwhile: this copy's error is no longer the transfer's
            log.warning("transfer_lease_lost", reason=f"while failing with: {exc}")
            return "lease_lost"
        if not isinstance(exc, PermanentError):
            return _retry_later(runtime, transfer, token, exc)
        if not ledger.finish(transfer.id, token, "failed", error=scrub(str(exc)), reason=_reason(exc)):
            log.warning("transfer_result_fenced_out", error=str(exc))
            return "lease_lost"
        log.error("transfer_failed", error=str(exc), reason=_reason(exc))
        runtime.stats.failed(transfer.storage, _reason(exc))
        return "failed"
    replaced: dict[str, Any] = {"replace": ""} if transfer.replaces else {}  # its next write is create-only
    if not ledger.finish(transfer.id, token, "archived", bytes=copied.bytes, sha256=copied.sha256, error="",
                         reason="", **replaced):
        log.warning("transfer_result_fenced_out", bytes=copied.bytes)
        return "lease_lost"
    log.info("recording_archived", key=transfer.key, bytes=copied.bytes, sha256=copied.sha256,
             **({"replaced_key": transfer.replaced_key} if transfer.replaced_key else {}))
    runtime.stats.archived(transfer.storage, copied.bytes, time.monotonic() - started)
    _update_manifest(runtime, transfer)
    return "archived"


def _update_manifest(runtime: Runtime, transfer: Transfer) -> None:
    """The session's manifest rewritten with this file in it. The file is archived whatever happens
    here: a failure is logged, and the session's next archived file writes the manifest again."""
    try:
        Manifests(runtime).file_archived(transfer)
    except Exception as exc:  # noqa: BLE001 - the transfer is done; a manifest never undoes it
        log.warning("manifest_write_failed", session_id=transfer.session_id, error=scrub(str(exc)))


def _reason(exc: Exception) -> str:
    """The storage's reason for a storage fault (``credentials``, ``disk_full``…), else the error's kind."""
    reason = getattr(exc, "reason", None)
    return reason if isinstance(reason, str) else type(exc).__name__


def _retry_later(runtime: Runtime, transfer: Transfer, token: str, exc: Exception) -> str:
    now = runtime.ledger.now_ms()  # Redis's clock, as the deadline is judged everywhere else
    reason = scrub(str(exc) if isinstance(exc, TransientError) else f"{type(exc).__name__}: {exc}")
    expires = to_ms(transfer.expires_at) if transfer.expires_at else None
    if isinstance(exc, SourceMissing) and expires is not None and now >= expires:
        if runtime.ledger.finish(transfer.id, token, "lost", error=f"past its deletion deadline: {reason}"):
            runtime.stats.failed(transfer.storage, "lost")
        log.error("recording_lost", error=reason)
        return "lost"
    archive = runtime.archive
    delay = int(backoff(
        transfer.attempts,
        int(archive.retry_backoff.total_seconds() * 1000),
        int(archive.retry_backoff_max.total_seconds() * 1000),
    ))
    if runtime.ledger.finish(transfer.id, token, "queued", retry_in_ms=delay, error=reason, reason=_reason(exc)):
        runtime.stats.retried(transfer.storage, _reason(exc))
    level = log.warning if isinstance(exc, TransientError) else log.exception
    level("transfer_retry_scheduled", error=reason, retry_in_s=round(delay / 1000, 1),
          attempt=transfer.attempts)
    return "retry"


def _metadata(file: dict[str, str], transfer: Transfer) -> dict[str, str]:
    """The object's metadata: underscore names, as every store (Azure included) accepts them."""
    values = {
        "call_cid": transfer.call_cid,
        "session_id": file.get("session_id"),
        "recording_type": file.get("recording_type"),
        "start_time": rfc3339(from_ms(file.get("start_time"))),
        "end_time": rfc3339(from_ms(file.get("end_time"))),
    }
    return {k: v for k, v in values.items() if v}


def _copy(runtime: Runtime, transfer: Transfer, lease: Heartbeat) -> Copied:
    file = runtime.ledger.file(transfer.file_id)
    kind = artefact(file.get("kind", ""))  # ValueError (retried) for a kind this version does not know
    if kind.api_source is not None:  # no URL: Stream's API answers with the file itself
        storage = runtime.storage(transfer.storage)
        body = api_source.fetch(runtime, kind, file)
        written = api_source.write_body(storage, transfer.key, body, content_type=content_type_for(transfer.filename),
                                        metadata=_metadata(file, transfer), lease=lease, overwrite=transfer.replaces,
                                        noted=transfer.noted_commit)
        _verify(storage, transfer.key, written)
        return Copied(written.size, written.sha256)
    job = CopyJob(
        runtime=runtime, source=SignedUrl(runtime, transfer.file_id, file), lease=lease,
        storage=runtime.storage(transfer.storage), key=transfer.key,
        content_type=content_type_for(transfer.filename), metadata=_metadata(file, transfer),
        recoveries=Recoveries(), overwrite=transfer.replaces, noted=transfer.noted_commit, resume=transfer.upload,
    )
    if job.storage.capabilities.server_side_copy:
        try:
            return _server_side_copy(job)
        except CopyRefused as exc:
            log.info("server_side_copy_refused", reason=str(exc))
        except KeyTaken as exc:  # streamed instead, without writing, to compare the bytes there
            log.info("server_side_copy_key_taken", reason=str(exc))
    digests = stream_copy(job)
    _verify(job.storage, transfer.key, digests)
    return Copied(digests.size, digests.sha256)


def _server_side_copy(job: CopyJob) -> Copied:
    """The store fetches the URL itself; the object is then read back once for its SHA-256."""
    storage, key = job.storage, job.key
    size = with_fresh_url(job, lambda url: source_size(job.runtime.http, url))
    with job.lease.unwatched():  # one long call, each of its requests bounded by the store's timeouts
        storage.copy_from_url(key, job.source.url, size=size, content_type=job.content_type,
                              metadata=job.metadata, overwrite=job.overwrite)
    native = storage.capabilities.native_checksum
    hasher = Hasher((native,) if native else ())
    for chunk in storage.read(key):
        hasher.update(chunk)
        job.lease.progress()
    digests = hasher.digests()
    if digests.size != size:
        raise VerificationFailed(f"{storage.describe()}: {key} holds {digests.size} bytes, source has {size}")
    log.info("server_side_copy_done", bytes=size)
    return Copied(digests.size, digests.sha256)


def _verify(storage: Storage, key: str, digests: Digests) -> None:
    """The stored object must have the size sent, and every checksum the store reports must match."""
    try:
        stored = storage.stat(key)
    except FileNotFoundError:
        raise VerificationFailed(f"{storage.describe()}: {key} is missing right after upload") from None
    problem = stored.mismatch(digests)
    if problem:
        raise VerificationFailed(f"{storage.describe()}: {problem}")
