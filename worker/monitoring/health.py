"""Each storage's health, kept in Redis (``P storage_health``) for /metrics and the status page.

The worker's start-up check (`archiver storage check`'s full probe) writes it, and so does the
scheduler every `HEALTH_EVERY` seconds with a lighter probe: one small object written, stat'ed and
deleted (a multipart-sized probe every few minutes would cost real bytes on a paid store). Neither
leaves an object behind: they write without the storage's retention or holds and delete the exact
version they wrote (`worker.storage.write_once.remove_probe`).
"""

from __future__ import annotations

import uuid

import structlog

from config.logging import scrub
from worker.errors import StorageRefused, StorageUnavailable
from worker.runtime import Runtime
from worker.storage import Storage, unprotected
from worker.storage.checksums import Hasher
from worker.storage.write_once import remove_probe

log = structlog.get_logger(__name__)
HEALTH_EVERY = 300.0  # seconds
_BODY = b"archiver health probe: safe to delete\n"


def probe(storage: Storage) -> None:
    """Write, stat and delete a small object. Raises the storage's errors (StorageUnavailable when
    the size it reports differs)."""
    key = f"archiver-health-{uuid.uuid4()}.txt"
    hasher = Hasher((storage.capabilities.native_checksum,) if storage.capabilities.native_checksum else ())
    hasher.update(_BODY)
    version: str | None = None
    try:
        with storage.open_writer(key, content_type="text/plain", metadata={"purpose": "archiver-health"},
                                 **unprotected(storage)) as writer:
            writer.write(_BODY)
            version = writer.commit(hasher.digests()).version
        if storage.stat(key).size != len(_BODY):
            raise StorageUnavailable(f"{key}: wrong size read back", reason="other")
    finally:
        try:
            remove_probe(storage, key, version)
        except Exception:  # noqa: S110 - the probe's own failure is what matters
            pass


def reason_of(exc: Exception) -> str:
    return exc.reason if isinstance(exc, StorageRefused | StorageUnavailable) else "other"


def check_health(runtime: Runtime) -> dict[str, bool]:
    """Probe every configured storage and record each result; never raises for a storage fault."""
    results: dict[str, bool] = {}
    stats = runtime.stats
    configured = runtime.archive.effective_storages()
    stats.forget_storages({config.name for config in configured})
    for config in configured:
        try:
            probe(runtime.storage(config.name))
        except Exception as exc:  # noqa: BLE001 - a health check reports every failure
            reason = reason_of(exc)
            log.error("storage_health_failed", storage=config.name, reason=reason, error=scrub(str(exc)))
            stats.storage_checked(config.name, False, reason)
            results[config.name] = False
            continue
        stats.storage_checked(config.name, True, None)
        results[config.name] = True
    return results
