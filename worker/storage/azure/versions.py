"""Every version and snapshot of one Azure blob: listing it with what protects each, erasing it, holding it.

With blob versioning on, deleting the current blob turns it into a previous version: nothing is
erased. So erasure lists the exact name's versions and snapshots (``include=["versions",
"snapshots"]``; the listing is by prefix, other names are filtered out), deletes the current blob with
its snapshots, each version by its version id and each remaining snapshot, then lists again (the
delete of the current blob made one more version) until nothing is left, at most `ROUNDS` times. What
protects a version is in the listing: ``has_legal_hold`` and ``immutability_policy.expiry_time``. Azure
refuses a protected one with 409 ``BlobImmutableDueToPolicy`` / ``BlobImmutableDueToLegalHold``
(ErasureRefused).

Legal holds (Set Legal Hold) need version-level immutability on the container; they are set on the
current blob and each version, then read back from its properties. Azurite 3.35 keeps no versions
(``version_id`` is None), keeps snapshots, and answers Set Legal Hold and Set Immutability Policy with
501 "Current API is not implemented yet": a StorageRefused saying the store has no legal holds.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError

from worker.errors import ErasureReason, ErasureRefused, StorageRefused
from worker.storage.azure.errors import error_code, status_of
from worker.storage.base import ObjectVersion, refuse_if_protected

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient

    from worker.storage.azure.storage import AzureStorage

ROUNDS = 3
_INCLUDE = ["versions", "snapshots", "immutabilitypolicy", "legalhold"]
_LOCKED: dict[str, ErasureReason] = {"BlobImmutableDueToPolicy": "retention",
                                     "BlobImmutableDueToLegalHold": "legal_hold"}


def _version(key: str, item: Any) -> ObjectVersion:
    policy = getattr(item, "immutability_policy", None)
    until = getattr(policy, "expiry_time", None)
    held = bool(getattr(item, "has_legal_hold", False))
    if item.snapshot:
        return ObjectVersion(key, str(item.snapshot), "snapshot", held, until if isinstance(until, datetime) else None)
    current = item.version_id is None or bool(item.is_current_version)
    return ObjectVersion(key, None if current else str(item.version_id), "object" if current else "version", held,
                         until if isinstance(until, datetime) else None)


def list_versions(storage: AzureStorage, key: str) -> list[ObjectVersion]:
    """The current blob, every previous version and every snapshot of exactly `key`."""
    full, client = storage.full_key(key), storage.container.client
    try:
        listed = client.list_blobs(name_starts_with=full, include=_INCLUDE)
        items = [item for item in listed if item.name == full]
    except AzureError as exc:
        storage.raise_mapped(exc, "list the versions of", key)
    return [_version(key, item) for item in items]


def _client(storage: AzureStorage, key: str, version: ObjectVersion) -> BlobClient:
    full = storage.full_key(key)
    if version.kind == "snapshot":
        return storage.container.client.get_blob_client(full, snapshot=version.version)
    return storage.container.client.get_blob_client(full, version_id=version.version)


def erase(storage: AzureStorage, key: str) -> list[ObjectVersion]:
    """Delete the current blob, its snapshots and every version of `key` (see the module docstring)."""
    deleted: list[ObjectVersion] = []
    for _ in range(ROUNDS):
        found = list_versions(storage, key)
        if not found:
            break
        refuse_if_protected(storage.describe(), found)
        for version in sorted(found, key=lambda v: v.kind != "snapshot"):  # snapshots first: the blob's go with it
            try:
                _client(storage, key, version).delete_blob("include" if version.kind == "object" else None)
            except AzureError as exc:
                if error_code(exc) == "BlobNotFound":
                    continue
                reason = _LOCKED.get(error_code(exc))
                if reason is not None:
                    raise ErasureRefused(f"{storage.describe()}: Azure refused to delete {version}: "
                                         f"{error_code(exc)}", reason=reason) from exc
                storage.raise_mapped(exc, f"erase {version.kind} {version.version} of", key)
            deleted.append(version)
    return deleted


def set_legal_hold(storage: AzureStorage, key: str, on: bool) -> list[ObjectVersion]:
    """Set Legal Hold on the current blob and each version of `key`, read back from its properties."""
    versions = [v for v in list_versions(storage, key) if v.kind != "snapshot"]
    if not versions:
        raise FileNotFoundError(f"{storage.describe()}{key}: no blob to hold")
    done = []
    for version in versions:
        client = _client(storage, key, version)
        try:
            client.set_legal_hold(on)
            kept = bool(client.get_blob_properties().has_legal_hold)
        except AzureError as exc:
            if status_of(exc) == 501:
                raise StorageRefused(f"{storage.describe()}: no legal hold on {version}: the store does not "
                                     "implement Set Legal Hold (501; Azurite does not)", reason="other") from exc
            storage.raise_mapped(exc, "set the legal hold of", key)
        if kept != on:
            raise StorageRefused(f"{storage.describe()}: the legal hold of {version} reads {kept} after it was "
                                 f"set {on}: the store does not keep it")
        done.append(ObjectVersion(key, version.version, version.kind, on, version.retain_until))
    return done
