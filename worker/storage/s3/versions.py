"""Every version of one S3 object: listing it with what protects each, erasing it, holding it.

In a versioned bucket (and every Object Lock bucket is one) a plain DeleteObject only adds a delete
marker in front of the versions: nothing is erased. So erasure lists the exact key's versions and
delete markers (ListObjectVersions lists a *prefix*: ``a`` also lists ``ab``, which is filtered out)
and deletes each by its VersionId, the markers too. In an unversioned bucket the one version is
``null``, which S3 deletes the same way. What protects a version is read with a HeadObject of that
version (``ObjectLockLegalHoldStatus``, ``ObjectLockMode`` and ``ObjectLockRetainUntilDate``; AWS shows
them to a caller allowed s3:GetObjectLegalHold / s3:GetObjectRetention): one request per version, and
moto answers GetObjectRetention with a 500 where HEAD works (and a HEAD of ``?versionId=null`` with
400: the ``null`` version is HEADed without one). A delete refused with AccessDenied
(AWS: "Access Denied because object protected by object lock."; moto: "Access Denied") is an
ErasureRefused when the version's HEAD showed a hold or a retention period, else the plain permission
refusal it is. Governance-mode retention is never bypassed (no ``BypassGovernanceRetention``).

Legal holds are set on every version (not on delete markers) with PutObjectLegalHold, then read back
with GetObjectLegalHold. A bucket without Object Lock answers InvalidRequest ("Bucket is missing
ObjectLockConfiguration"): a StorageRefused saying so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from botocore import exceptions as boto

from worker.errors import ErasureRefused, StorageRefused
from worker.storage.base import ObjectVersion, refuse_if_protected

if TYPE_CHECKING:
    from worker.storage.s3.storage import S3Storage

_ERRORS = (boto.ClientError, boto.BotoCoreError)


def _code(exc: Exception) -> str:
    return str(exc.response.get("Error", {}).get("Code", "")) if isinstance(exc, boto.ClientError) else ""


def list_versions(storage: S3Storage, key: str) -> list[ObjectVersion]:
    """Every version and delete marker of exactly `key`, newest first, each with its protection."""
    full, bucket = storage.full_key(key), storage.bucket.name
    found: list[ObjectVersion] = []
    pages = storage.client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=full)
    try:
        for page in pages:
            found += [_protected(storage, key, str(v["VersionId"])) for v in page.get("Versions", [])
                      if v["Key"] == full]
            found += [ObjectVersion(key, str(m["VersionId"]), "delete_marker") for m in page.get("DeleteMarkers", [])
                      if m["Key"] == full]
    except _ERRORS as exc:
        storage.raise_mapped(exc, "list the versions of", key)
    return found


def _protected(storage: S3Storage, key: str, version: str) -> ObjectVersion:
    """The version, with the hold and retention its HEAD reports."""
    # an unversioned bucket's one version is "null": moto answers a HEAD of ?versionId=null with 400
    extra: dict[str, Any] = {} if version == "null" else {"VersionId": version}
    try:
        head: Any = storage.client.head_object(Bucket=storage.bucket.name, Key=storage.full_key(key), **extra)
    except _ERRORS as exc:
        storage.raise_mapped(exc, "read the protection of", key, missing=True)
    held = head.get("ObjectLockLegalHoldStatus") == "ON"
    return ObjectVersion(key, version, "version", legal_hold=held, retain_until=head.get("ObjectLockRetainUntilDate"))


def erase(storage: S3Storage, key: str) -> list[ObjectVersion]:
    """Delete every version and delete marker of `key` by VersionId (see the module docstring)."""
    deleted, found = [], list_versions(storage, key)
    refuse_if_protected(storage.describe(), found)
    for version in found:
        try:
            storage.client.delete_object(Bucket=storage.bucket.name, Key=storage.full_key(key),
                                         VersionId=str(version.version))
        except _ERRORS as exc:
            blocker = version.blocker()
            if _code(exc) == "AccessDenied" and blocker is not None:
                raise ErasureRefused(f"{storage.describe()}: S3 refused to delete {blocker[1]}",
                                     reason=blocker[0]) from exc
            storage.raise_mapped(exc, f"erase version {version.version} of", key)
        deleted.append(version)
    return deleted


def set_legal_hold(storage: S3Storage, key: str, on: bool) -> list[ObjectVersion]:
    """PutObjectLegalHold ON / OFF on every version of `key`, each read back."""
    status: Literal["ON", "OFF"] = "ON" if on else "OFF"
    done = []
    versions = [v for v in list_versions(storage, key) if v.kind == "version"]
    if not versions:
        raise FileNotFoundError(f"{storage.describe()}{key}: no object to hold")
    for version in versions:
        bucket, full, vid = storage.bucket.name, storage.full_key(key), str(version.version)
        try:
            storage.client.put_object_legal_hold(Bucket=bucket, Key=full, VersionId=vid, LegalHold={"Status": status})
            answer = storage.client.get_object_legal_hold(Bucket=bucket, Key=full, VersionId=vid)
            kept = answer.get("LegalHold", {}).get("Status", "OFF")
        except _ERRORS as exc:
            if _code(exc) == "InvalidRequest":
                raise StorageRefused(f"{storage.describe()}: no legal hold on {version}: the bucket has no Object "
                                     f"Lock (S3: {exc})", reason="permission") from exc
            storage.raise_mapped(exc, f"set the legal hold {status} on", key)
        if kept != status:
            raise StorageRefused(f"{storage.describe()}: the legal hold of {version} reads {kept} after it was set "
                                 f"{status}: the store does not keep it")
        done.append(ObjectVersion(key, version.version, "version", legal_hold=on,
                                  retain_until=version.retain_until))
    return done
