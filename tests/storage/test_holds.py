"""Legal holds and erasure against each store as it really behaves: moto_server with an Object Lock bucket,
the GCS emulator, Azurite, local disk (what each emulator lacks is measured here, not assumed)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mypy_boto3_s3 import S3Client

from tests.support import gcs, moto
from tests.support.azurite import azure_storage, container_client, create_container
from worker.errors import ErasureRefused, StorageRefused
from worker.storage.local import LocalStorage
from worker.storage.s3.storage import S3Storage

KEY = "calls/default/x/rec.mp4"


@pytest.fixture
def locked(moto_server: str, moto_client: S3Client) -> Iterator[tuple[S3Storage, str]]:
    """An S3 storage in a fresh bucket with Object Lock (so versioned), and the bucket's name."""
    bucket = f"lock-{uuid.uuid4().hex[:20]}"
    moto_client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    storage = moto.s3_storage(moto_server, bucket, "p/")
    yield storage, bucket
    storage.close()


def put(storage: S3Storage, data: bytes, key: str = KEY) -> None:
    with storage.open_writer(key, content_type="video/mp4", metadata={}, overwrite=True) as writer:
        writer.write(data)
        writer.commit()


def versions_left(client: S3Client, bucket: str, key: str = "p/" + KEY) -> list[str]:
    listed = client.list_object_versions(Bucket=bucket, Prefix=key)
    return [v["VersionId"] for v in [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])] if v["Key"] == key]


def test_s3_hold_blocks_erase_and_release_lets_it_remove_every_version(
        locked: tuple[S3Storage, str], moto_client: S3Client) -> None:
    """A legal hold is set on every version (read back ON); erase is then refused with reason legal_hold
    and deletes nothing; once released, erase deletes every version and the delete marker."""
    storage, bucket = locked
    put(storage, b"one")
    put(storage, b"two")
    moto_client.delete_object(Bucket=bucket, Key="p/" + KEY)  # a delete marker: not an erasure
    assert len(versions_left(moto_client, bucket)) == 3
    held = storage.set_legal_hold(KEY, True)
    assert len(held) == 2
    for version in held:
        answer = moto_client.get_object_legal_hold(Bucket=bucket, Key="p/" + KEY, VersionId=str(version.version))
        assert answer["LegalHold"]["Status"] == "ON"
    assert all(v.blocker() is not None for v in storage.versions(KEY) if v.kind == "version")
    with pytest.raises(ErasureRefused) as refused:
        storage.erase(KEY)
    assert refused.value.reason == "legal_hold" and "legal hold" in str(refused.value)
    assert len(versions_left(moto_client, bucket)) == 3  # checked before any delete: the marker is there too
    storage.set_legal_hold(KEY, False)
    erased = storage.erase(KEY)
    assert sorted(v.kind for v in erased) == ["delete_marker", "version", "version"]
    assert versions_left(moto_client, bucket) == []


def test_s3_retention_refuses_erase_naming_it(locked: tuple[S3Storage, str], moto_client: S3Client) -> None:
    """An unexpired retention period (Object Lock GOVERNANCE) shows in versions() and makes erase fail
    with reason retention; governance is never bypassed."""
    storage, bucket = locked
    until = datetime.now(UTC) + timedelta(days=1)
    moto_client.put_object(Bucket=bucket, Key="p/" + KEY, Body=b"x", ObjectLockMode="GOVERNANCE",
                           ObjectLockRetainUntilDate=until, ChecksumAlgorithm="CRC32")
    [version] = storage.versions(KEY)
    assert version.retain_until is not None and version.blocker() is not None
    with pytest.raises(ErasureRefused) as refused:
        storage.erase(KEY)
    assert refused.value.reason == "retention" and "retained until" in str(refused.value)
    assert len(versions_left(moto_client, bucket)) == 1


def test_s3_hold_in_a_bucket_without_object_lock_is_refused(moto_server: str, moto_client: S3Client) -> None:
    """A bucket without Object Lock refuses PutObjectLegalHold: a StorageRefused saying so."""
    storage = moto.s3_storage(moto_server, moto.create_bucket(moto_client), "p/")
    put(storage, b"x")
    with pytest.raises(StorageRefused, match="no Object Lock"):
        storage.set_legal_hold(KEY, True)
    storage.close()


def test_gcs_emulator_accepts_a_temporary_hold_but_keeps_none(gcs_emulator: str) -> None:
    """Measured: the GCS emulator answers the PATCH of temporaryHold but keeps no hold, so set_legal_hold
    refuses (the read-back is what checks the request); erase deletes the live generation."""
    bucket = gcs.create_bucket(gcs_emulator)
    storage = gcs.gcs_storage(gcs_emulator, bucket, "p/")
    with storage.open_writer(KEY, content_type="video/mp4", metadata={}) as writer:
        writer.write(b"x")
        writer.commit()
    assert storage.capabilities.legal_hold
    with pytest.raises(StorageRefused, match="does not keep it"):
        storage.set_legal_hold(KEY, True)
    [version] = storage.versions(KEY)
    assert version.kind == "version" and version.version and not version.legal_hold
    assert [v.version for v in storage.erase(KEY)] == [version.version]
    assert gcs.list_objects(gcs_emulator, bucket) == []
    storage.close()


def test_azurite_has_no_legal_hold_and_erase_takes_the_snapshots(azurite: str) -> None:
    """Measured: Azurite answers Set Legal Hold with 501 (refused, saying so) and keeps no versions;
    erase deletes the blob and its snapshots."""
    container = create_container(azurite)
    storage = azure_storage(azurite, container, "p/")
    with storage.open_writer(KEY, content_type="video/mp4", metadata={}) as writer:
        writer.write(b"x")
        writer.commit()
    with container_client(azurite, container) as client:
        client.get_blob_client("p/" + KEY).create_snapshot()
    with pytest.raises(StorageRefused, match="does not implement Set Legal Hold"):
        storage.set_legal_hold(KEY, True)
    assert sorted(v.kind for v in storage.versions(KEY)) == ["object", "snapshot"]
    assert sorted(v.kind for v in storage.erase(KEY)) == ["object", "snapshot"]
    with container_client(azurite, container) as client:
        assert list(client.list_blobs(include=["snapshots", "versions"])) == []
    storage.close()


def test_local_disk_declares_no_store_hold(tmp_path: Path) -> None:
    """Local disk has no store hold (the ledger's hold is all there is); erase unlinks the file."""
    storage = LocalStorage("disk", tmp_path)
    with storage.open_writer(KEY, content_type="video/mp4", metadata={}) as writer:
        writer.write(b"x")
        writer.commit()
    assert not storage.capabilities.legal_hold
    with pytest.raises(NotImplementedError):
        storage.set_legal_hold(KEY, True)
    assert [str(v) for v in storage.erase(KEY)] == [KEY]
    assert not (tmp_path / KEY).exists()
