"""Every generation of one GCS object: listing it with what protects each, erasing it, holding it.

With object versioning on, a plain delete makes the live generation noncurrent: nothing is erased. So
erasure lists the exact name's generations (``versions=True``; the listing is by prefix, so other names
are filtered out) and deletes each by its generation. What protects a generation is in its resource:
``temporaryHold``, ``eventBasedHold``, ``retentionExpirationTime`` (the bucket's retention policy) and
``retention.retainUntilTime`` (object retention). GCS refuses deleting a protected generation with a 403
(ErasureRefused when the resource showed why; otherwise the permission refusal it is).

The archiver's legal hold is GCS's temporary hold (an event-based hold is the bucket's retention
clock, not a legal hold): set on every generation with a PATCH of ``temporaryHold``, read back from the
answer. A store that answers the PATCH but keeps no hold is refused (the gcp-storage-emulator does
exactly that: it accepts the PATCH and returns no ``temporaryHold``; it also keeps only the live
generation, and enforces no hold nor retention).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from worker.errors import ErasureRefused, StorageRefused
from worker.storage.base import ObjectVersion, refuse_if_protected
from worker.storage.gcs.errors import ERRORS

if TYPE_CHECKING:
    from worker.storage.gcs.storage import GCSStorage


def _version(key: str, blob: Any) -> ObjectVersion:
    retention = getattr(blob, "retention", None)
    until = [t for t in (blob.retention_expiration_time, getattr(retention, "retain_until_time", None))
             if isinstance(t, datetime)]
    return ObjectVersion(key, str(blob.generation), "version",
                         legal_hold=bool(blob.temporary_hold) or bool(blob.event_based_hold),
                         retain_until=max(until) if until else None)


def list_versions(storage: GCSStorage, key: str) -> list[ObjectVersion]:
    """Every generation of exactly `key`, with its holds and retention."""
    bucket, full = storage.bucket, storage.full_key(key)
    try:
        blobs = list(bucket.client.list_blobs(bucket.name, prefix=full, versions=True, timeout=bucket.timeout,
                                              retry=bucket.retry))
    except ERRORS as exc:
        raise bucket.error(exc, "list the generations of", key, "bucket") from exc
    return [_version(key, blob) for blob in blobs if blob.name == full]


def erase(storage: GCSStorage, key: str) -> list[ObjectVersion]:
    """Delete every generation of `key` (see the module docstring)."""
    deleted, found = [], list_versions(storage, key)
    refuse_if_protected(storage.describe(), found)
    for version in found:
        try:
            storage.bucket.delete(key, storage.full_key(key), int(str(version.version)))
        except StorageRefused as exc:
            blocker = version.blocker()
            if exc.reason == "permission" and blocker is not None:
                raise ErasureRefused(f"{storage.describe()}: GCS refused to delete {blocker[1]}: {exc}",
                                     reason=blocker[0]) from exc
            raise
        deleted.append(version)
    return deleted


def set_legal_hold(storage: GCSStorage, key: str, on: bool) -> list[ObjectVersion]:
    """PATCH ``temporaryHold`` on every generation of `key`, read back from GCS's answer."""
    bucket, done = storage.bucket, []
    versions = list_versions(storage, key)
    if not versions:
        raise FileNotFoundError(f"{storage.describe()}{key}: no object to hold")
    for version in versions:
        blob = bucket.blobs.blob(storage.full_key(key), generation=int(str(version.version)))
        blob.temporary_hold = on
        try:
            blob.patch(timeout=bucket.timeout, retry=bucket.retry)
        except ERRORS as exc:
            raise bucket.error(exc, "set the temporary hold of", key) from exc
        if bool(blob.temporary_hold) != on:
            raise StorageRefused(f"{storage.describe()}: the temporary hold of {version} reads "
                                 f"{blob.temporary_hold} after it was set {on}: the store does not keep it")
        done.append(_version(key, blob))
    return done
