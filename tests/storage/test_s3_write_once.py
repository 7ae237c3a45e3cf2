"""S3 Object Lock set on the upload itself (PutObject, CreateMultipartUpload), read back, enforced, and
proved by `archiver storage check`, against moto_server with Object Lock buckets.

What moto_server 5.2.6 does (measured here): it keeps Object Lock from PutObject (mode, retain-until,
legal hold: HeadObject and GetObjectLegalHold return them), refuses a PutObject with lock headers but
no Content-MD5 / x-amz-sdk-checksum-algorithm (400) and one into a bucket without Object Lock (400
InvalidRequest), and refuses deleting a locked version (403 AccessDenied, "Access Denied" only). It
has no GetObjectRetention (its GET ``?retention`` answers with the object's bytes), so retention is
read back from HeadObject, as `S3Storage.protection` does; and it drops the lock headers of
CreateMultipartUpload (the completed object carries none), so the multipart path is checked on the
wire, through the fault proxy.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from mypy_boto3_s3 import S3Client

from tests.storage.conformance import MiB, write_with_digests
from tests.support.faultproxy import FaultProxy, record
from tests.support.moto import TEST_TUNING, create_bucket, s3_storage
from worker.errors import ObjectLocked, StorageRefused
from worker.storage.probe import check_storage
from worker.storage.s3.storage import S3Storage

BACKEND = "s3"
LOCK = {"s3_object_lock_mode": "COMPLIANCE", "s3_object_lock_days": 3, "s3_legal_hold": True}


@pytest.fixture
def locked_bucket(moto_client: S3Client) -> str:
    """A fresh bucket with Object Lock (and so versioning) enabled."""
    return create_bucket(moto_client, object_lock=True)


@pytest.fixture
def locked(moto_server: str, locked_bucket: str) -> Iterator[S3Storage]:
    """A storage on that bucket whose every write carries COMPLIANCE for 3 days and a legal hold."""
    storage = s3_storage(moto_server, locked_bucket, "p/", **LOCK)
    yield storage
    storage.close()


def lock_of(client: S3Client, bucket: str, key: str) -> dict[str, Any]:
    """The object's lock as S3 reports it: HeadObject's x-amz-object-lock-* (moto has no GetObjectRetention)
    and GetObjectLegalHold."""
    head = client.head_object(Bucket=bucket, Key=key)
    hold = client.get_object_legal_hold(Bucket=bucket, Key=key)["LegalHold"].get("Status")  # moto: {} for none
    return {"mode": head.get("ObjectLockMode"), "until": head.get("ObjectLockRetainUntilDate"), "hold": hold}


def versions(client: S3Client, bucket: str) -> list[str]:
    """Every version and delete marker left in `bucket`, by key."""
    listing = client.list_object_versions(Bucket=bucket)
    return sorted(v["Key"] for v in [*listing.get("Versions", []), *listing.get("DeleteMarkers", [])])


@pytest.mark.parametrize("checksum", ["when_supported", "when_required"])
def test_a_single_put_carries_the_lock_and_the_checksum_object_lock_needs(
    moto_server: str, moto_client: S3Client, locked_bucket: str, checksum: str
) -> None:
    """One PutObject sets mode, retain-until (now + the days) and the legal hold; S3 (and moto) refuse
    such a PUT without Content-MD5 or x-amz-sdk-checksum-algorithm, and it goes through in both modes."""
    storage = s3_storage(moto_server, locked_bucket, "p/", s3_request_checksum=checksum, **LOCK)
    try:
        before = datetime.now(UTC)
        stored, _ = write_with_digests(storage, "one.mp4", os.urandom(100_000))
    finally:
        storage.close()
    lock = lock_of(moto_client, locked_bucket, "p/one.mp4")
    assert (lock["mode"], lock["hold"]) == ("COMPLIANCE", "ON")
    assert before + timedelta(days=3) - timedelta(seconds=2) <= lock["until"] <= datetime.now(UTC) + timedelta(days=3)
    assert stored.version is not None


def test_the_lock_headers_and_a_checksum_go_on_every_request_that_makes_an_object(
    moto_server: str, locked_bucket: str
) -> None:
    """On the wire: PutObject and CreateMultipartUpload carry x-amz-object-lock-mode, -retain-until-date
    and -legal-hold; the PutObject and every part carry a checksum with its algorithm named."""
    with FaultProxy(moto_server) as proxy:
        seen = proxy.add(record(method="PUT"))
        created = proxy.add(record(method="POST", path=r"\?uploads"))
        storage = s3_storage(proxy.url, locked_bucket, "p/", **LOCK)
        try:
            write_with_digests(storage, "small.mp4", os.urandom(1000))
            write_with_digests(storage, "big.mp4", os.urandom(12 * MiB))
        finally:
            storage.close()
    put = next(r for r in seen.seen if r.target.endswith("/small.mp4"))
    parts = [r for r in seen.seen if "partNumber=" in r.target]
    for request in (put, *created.seen):
        assert request.headers["x-amz-object-lock-mode"] == "COMPLIANCE"
        assert request.headers["x-amz-object-lock-legal-hold"] == "ON"
        assert request.headers["x-amz-object-lock-retain-until-date"].endswith("Z")
    assert len(created.seen) == 1 and len(parts) == 3
    for request in (put, *parts):
        assert request.headers.get("x-amz-sdk-checksum-algorithm") == "CRC32C"
        assert "x-amz-checksum-crc32c" in request.headers


def test_moto_drops_the_lock_of_a_multipart_upload(locked: S3Storage, moto_client: S3Client,
                                                    locked_bucket: str) -> None:
    """Measured (moto_server 5.2.6): the object a multipart upload completes carries no lock, although
    CreateMultipartUpload asked for it (the test above sees the headers go); real S3 sets it there."""
    write_with_digests(locked, "big.mp4", os.urandom(12 * MiB))
    assert lock_of(moto_client, locked_bucket, "p/big.mp4")["mode"] is None


def test_protection_reads_back_mode_until_holds_and_version(locked: S3Storage) -> None:
    """`protection` gives what the store keeps for the current version."""
    stored, _ = write_with_digests(locked, "read.mp4", os.urandom(5000))
    found = locked.protection("read.mp4")
    assert (found.mode, found.holds, found.version) == ("COMPLIANCE", ("legal",), stored.version)
    assert found.retain_until is not None and found.locked() and found.legal_hold
    assert locked.stat("read.mp4").version == stored.version
    with pytest.raises(FileNotFoundError):
        locked.protection("absent.mp4")


def test_a_locked_version_cannot_be_deleted_and_a_plain_delete_only_hides_it(
    locked: S3Storage, moto_client: S3Client, locked_bucket: str
) -> None:
    """Deleting the locked version is refused (moto: a bare AccessDenied; S3 says "object lock", which is
    ObjectLocked); a plain delete adds a delete marker and the locked version stays."""
    stored, _ = write_with_digests(locked, "keep.mp4", os.urandom(5000))
    assert stored.version is not None
    with pytest.raises(StorageRefused) as refused:
        locked.delete_version("keep.mp4", stored.version)
    assert refused.value.reason in ("permission", "object_locked")
    locked.delete("keep.mp4")
    with pytest.raises(FileNotFoundError):
        locked.stat("keep.mp4")
    assert versions(moto_client, locked_bucket) == ["p/keep.mp4", "p/keep.mp4"]  # the version and a delete marker


def test_s3s_own_refusal_of_a_locked_delete_is_object_locked(locked: S3Storage) -> None:
    """S3's answer to DeleteObject on a locked version maps to ObjectLocked, with the hint."""
    error = ClientError({"Error": {"Code": "AccessDenied",
                                   "Message": "Access Denied because object protected by object lock."},
                         "ResponseMetadata": {"HTTPStatusCode": 403}}, "DeleteObject")
    with pytest.raises(ObjectLocked, match="retention period or a hold"):
        locked.raise_mapped(error, "delete a version of", "x.mp4")


def test_a_released_hold_reads_back_off(locked: S3Storage, moto_client: S3Client, locked_bucket: str) -> None:
    """`release_holds` turns the version's legal hold OFF (PutObjectLegalHold); its retention stays."""
    stored, _ = write_with_digests(locked, "held.mp4", os.urandom(5000))
    locked.release_holds("held.mp4", stored.version)
    assert lock_of(moto_client, locked_bucket, "p/held.mp4")["hold"] == "OFF"
    assert locked.protection("held.mp4").holds == () and locked.protection("held.mp4").mode == "COMPLIANCE"


def test_an_unprotected_write_carries_no_lock_and_its_version_can_go(locked: S3Storage, moto_client: S3Client,
                                                                     locked_bucket: str) -> None:
    """`protect=False` (the probes): no lock, and deleting its version leaves nothing."""
    with locked.open_writer("probe.txt", content_type="text/plain", metadata={}, protect=False) as writer:
        writer.write(b"probe")
        stored = writer.commit()
    assert lock_of(moto_client, locked_bucket, "p/probe.txt") == {"mode": None, "until": None, "hold": None}
    assert stored.version is not None
    locked.delete_version("probe.txt", stored.version)
    assert versions(moto_client, locked_bucket) == []


def test_write_once_problem_names_a_bucket_without_object_lock(moto_server: str, bucket: str,
                                                               locked: S3Storage) -> None:
    """A bucket without Object Lock is named; one with it has no problem; a PutObject with lock headers
    into the former is refused by the store itself."""
    plain = s3_storage(moto_server, bucket, "p/", **LOCK)
    try:
        problem = plain.write_once_problem()
        assert problem is not None and bucket in problem and "no Object Lock" in problem
        assert locked.write_once_problem() is None
        with pytest.raises(StorageRefused, match="ObjectLockConfiguration"):
            write_with_digests(plain, "x.mp4", b"x")
    finally:
        plain.close()


def test_write_once_problem_names_a_bucket_not_versioned(moto_server: str, moto_client: S3Client) -> None:
    """Object Lock configured on a bucket whose versioning is then suspended: versioning is named (S3
    itself refuses to suspend it; moto lets it)."""
    name = create_bucket(moto_client, object_lock=True)
    try:
        moto_client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Suspended"})
    except ClientError:
        pytest.skip("this S3 keeps versioning on with Object Lock, as AWS does")
    storage = s3_storage(moto_server, name, "p/", **LOCK)
    try:
        assert "not versioned" in (storage.write_once_problem() or "")
    finally:
        storage.close()


# --- archiver storage check ------------------------------------------------------------------------------------

def test_check_by_hand_proves_the_lock_and_leaves_only_the_locked_note(locked: S3Storage, moto_client: S3Client,
                                                                       locked_bucket: str) -> None:
    """Run by hand: the bucket is checked first, the note carries the lock, its deletion is refused, its
    legal hold released; it stays until its retention ends (the report says until when) and nothing
    else is left, not even a version of the multipart probe."""
    report = check_storage(locked, TEST_TUNING, protect=True)
    assert report.ok, report.message
    names = [step.name for step in report.steps]
    assert names[0] == "write-once support" and names[-2:] == ["write-once", "delete"]
    proof = report.steps[-2].detail
    assert "COMPLIANCE until" in proof and "deleting it was refused" in proof and "holds were released" in proof
    assert "stays until" in proof
    ((key, until),) = report.kept
    assert until > datetime.now(UTC) + timedelta(days=2, hours=23)
    assert versions(moto_client, locked_bucket) == [f"p/{key}"]
    assert lock_of(moto_client, locked_bucket, f"p/{key}")["hold"] == "OFF"


def test_check_with_a_legal_hold_only_leaves_nothing(moto_server: str, moto_client: S3Client,
                                                     locked_bucket: str) -> None:
    """A hold has no end: the note's deletion is refused while held, then the hold is released and the
    note deleted, version and all."""
    storage = s3_storage(moto_server, locked_bucket, "p/", s3_legal_hold=True)
    try:
        report = check_storage(storage, TEST_TUNING, protect=True)
    finally:
        storage.close()
    assert report.ok, report.message
    assert report.kept == () and "holds were released" in report.steps[-2].detail
    assert versions(moto_client, locked_bucket) == []


def test_startup_and_doctor_checks_leave_no_object_and_no_version(locked: S3Storage, moto_client: S3Client,
                                                                  locked_bucket: str) -> None:
    """The check the worker runs at start (and `archiver doctor`) writes without the lock and deletes
    each probe's version: the locked bucket is empty afterwards."""
    report = check_storage(locked, TEST_TUNING)
    assert report.ok, report.message
    assert "write-once" not in [step.name for step in report.steps]
    assert versions(moto_client, locked_bucket) == []


def test_check_names_a_bucket_without_object_lock_as_the_reason(moto_server: str, moto_client: S3Client,
                                                                 bucket: str) -> None:
    """Lock settings on a bucket without Object Lock: the check stops first, naming the bucket, reason
    retention_unsupported, and writes nothing."""
    storage = s3_storage(moto_server, bucket, "p/", **LOCK)
    try:
        report = check_storage(storage, TEST_TUNING, protect=True)
    finally:
        storage.close()
    assert (report.ok, report.reason) == (False, "retention_unsupported")
    assert report.message is not None and bucket in report.message and "Object Lock" in report.message
    assert [step.name for step in report.steps] == ["write-once support"]
    assert versions(moto_client, bucket) == []
