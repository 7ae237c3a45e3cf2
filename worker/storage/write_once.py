"""The write-once part of `archiver storage check`, and how a probe object leaves nothing behind.

A storage whose settings ask for retention or holds (``Storage.retention``) is checked, when the check
is run by hand, with one protected probe: the check's small note, written with the retention and holds
every archived file gets. `prove` then reads its protection back from the store (`Storage.protection`),
tries to delete that very version (`Storage.delete_version`), which the store must refuse, and
releases the holds (`Storage.release_holds`) so that none outlives the check: a hold has no end, and a
held probe could never be deleted by the archiver. With a retention period the note stays until it
ends, and the check says until when; with holds only, the check deletes it afterwards.

The start-up and periodic probes write without retention or holds (``protect=False``) and delete
their exact version (`remove_probe`): in a versioned bucket (S3 with Object Lock, Azure with versioning)
a plain delete only hides an object behind a delete marker or makes it a previous version, and a
probe must leave nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from worker.errors import ObjectLocked, StorageRefused, VerificationFailed
from worker.storage.base import Protection, Retention, Storage

log = structlog.get_logger(__name__)
SLACK = timedelta(minutes=10)  # clocks: the store's retain-until may be a little before ours


@dataclass(frozen=True)
class Proof:
    """What the write-once step saw: `detail` for the report, and `kept` (the probe's key and until when)
    when the store keeps the probe past the check."""

    detail: str
    kept: tuple[str, datetime] | None


def remove_probe(storage: Storage, key: str, version: str | None) -> None:
    """Delete a probe object so that nothing of it stays: its exact `version` where the store names one,
    else the key. Without the right to delete a version (S3's s3:DeleteObjectVersion) a plain delete
    is made instead, and logged: the version stays behind its delete marker. Raises the storage's errors."""
    if version is None:
        storage.delete(key)
        return
    try:
        storage.delete_version(key, version)
    except ObjectLocked:
        raise
    except StorageRefused as exc:
        if exc.reason != "permission":
            raise
        log.warning("storage_probe_version_kept", storage=storage.name, key=key, reason=str(exc),
                    note="deleted without its version: the store keeps that version behind a delete marker")
        storage.delete(key)


def prove(storage: Storage, retention: Retention, key: str, written: datetime) -> Proof:
    """Check that the object at `key`, written at `written` with `retention`, carries it, that the store
    refuses to delete it, and release its holds (see the module docstring). Raises VerificationFailed
    when the store kept less than asked or deleted it; the storage's errors."""
    found = storage.protection(key)
    if found is None:
        raise VerificationFailed(f"{type(storage).__name__} cannot read back retention or holds")
    _compare(retention, found, written)
    refusal = _refused_delete(storage, key, found)
    detail = f"{key} carries {found}; deleting it was refused ({refusal})"
    if retention.holds:
        storage.release_holds(key, found.version)
        left = storage.protection(key)
        if left is not None and left.holds:
            raise VerificationFailed(f"{key} still carries {left} after its holds were released")
        detail += "; its holds were released"
    if found.retain_until is None:
        return Proof(detail, None)
    until = found.retain_until.astimezone(UTC)
    return Proof(f"{detail}; it stays until {until:%Y-%m-%d %H:%M} UTC, when its retention ends", (key, until))


def _compare(retention: Retention, found: Protection, written: datetime) -> None:
    """The store reports at least the mode, the period and the holds asked. Raises VerificationFailed."""
    problems = []
    expected = retention.until(written)
    if expected is not None:
        if found.mode != retention.mode:
            problems.append(f"mode {found.mode or 'none'}, {retention.mode} was asked")
        if found.retain_until is None or found.retain_until < expected - SLACK:
            problems.append(f"retained until {found.retain_until or 'never'}, {expected} was asked")
    missing = sorted(set(retention.holds) - set(found.holds))
    if missing:
        problems.append(f"no {', '.join(missing)} hold")
    if problems:
        raise VerificationFailed(
            f"the store did not keep the retention asked ({retention}): it reports {found} ({'; '.join(problems)}); "
            "a store or emulator that ignores these settings does this, and so do credentials not allowed to read "
            "them back (S3: s3:GetObjectRetention, s3:GetObjectLegalHold; docs/permissions.md)")


def _refused_delete(storage: Storage, key: str, found: Protection) -> str:
    """Try to delete the protected version; the store's refusal, as text. Raises VerificationFailed when
    it deleted it. An S3 AccessDenied without words (moto's) counts as the lock's refusal: the version
    was just read back as locked."""
    try:
        if found.version is not None:
            storage.delete_version(key, found.version)
        else:
            storage.delete(key)
    except ObjectLocked as exc:
        return _short(exc)
    except StorageRefused as exc:
        if exc.reason != "permission":
            raise
        return _short(exc)
    gone = found.version is not None
    try:
        storage.stat(key)
    except FileNotFoundError:
        gone = True
    if gone:
        raise VerificationFailed(f"the store deleted {key} although it reports it protected ({found}): it does "
                                 "not enforce retention or holds")
    return "the object is still there"


def _short(exc: Exception) -> str:
    text = str(exc)
    return text.split(" failed: ", 1)[-1]
