"""GCS object retention, holds and CMEK set on the upload itself, against gcp-storage-emulator.

What gcp-storage-emulator 2026.7.19 does with them (measured here): it accepts every field and keeps
none. An upload's ``retention``, ``temporaryHold``, ``eventBasedHold`` and its ``kmsKeyName`` parameter
are dropped (the object's resource shows none), so is a PATCH of them; a bucket created with
``enableObjectRetention=true`` has no ``objectRetention``; a "retained" object is deleted or
overwritten like any other. So the tests check what goes on the wire (`tests.support.gcs.watch`), that
`archiver storage check` reports the emulator for what it is, and read a protection back from an
object resource as GCS documents it (`protection_of`); GCS's own refusals are mapped from its words.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from tests.support.gcs import TEST_TUNING, MiB, gcs_storage, list_objects, object_resource, watch
from worker.errors import ObjectLocked, StorageRefused
from worker.storage.base import Retention
from worker.storage.errors import Scrubber
from worker.storage.gcs.bucket import protection_of
from worker.storage.gcs.errors import build
from worker.storage.gcs.storage import GCSStorage
from worker.storage.probe import check_storage

BACKEND = "gcs"
KMS_KEY = "projects/p/locations/europe-west1/keyRings/archive/cryptoKeys/recordings"
OPTIONS = {"gcs_retention_days": 7, "gcs_retention_mode": "Locked", "gcs_temporary_hold": True,
           "gcs_event_based_hold": True, "gcs_kms_key_name": KMS_KEY}  # fmt: skip


@pytest.fixture
def protected(gcs_emulator: str, bucket: str) -> Iterator[GCSStorage]:
    """A storage whose writes carry retention (Locked, 7 days), both holds and a CMEK."""
    storage = gcs_storage(gcs_emulator, bucket, "p/", **OPTIONS)
    yield storage
    storage.close()


def upload(storage: GCSStorage, key: str, size: int, **extra: Any) -> None:
    with storage.open_writer(key, content_type="video/mp4", metadata={}, **extra) as writer:
        writer.write(os.urandom(size))
        writer.commit()


def resource_sent(body: bytes) -> dict[str, Any]:
    """The object resource of a multipart/related upload body (its first part), or of a JSON body."""
    text = body.decode("utf-8", "replace")
    if text.startswith("{"):
        return dict(json.loads(text))
    return dict(json.loads(text.split("\r\n\r\n", 1)[1].split("\r\n--", 1)[0]))


def uploads(traffic: Any) -> list[tuple[str, dict[str, Any]]]:
    """Each upload request's URL and the object resource it carried."""
    return [(url, resource_sent(body)) for (method, url, _), body in zip(traffic.sent, traffic.bodies, strict=True)
            if method == "POST" and "/upload/" in url]


@pytest.mark.parametrize("size", [1000, 6 * MiB], ids=["one-request", "resumable"])
def test_a_protected_upload_carries_retention_holds_and_the_kms_key(protected: GCSStorage, size: int) -> None:
    """The one request, or the request opening the resumable session, carries ``retention`` (mode and
    retainUntilTime = now + the days), ``temporaryHold``, ``eventBasedHold``, and ``kmsKeyName``."""
    traffic = watch(protected)
    before = datetime.now(UTC).replace(microsecond=0)
    upload(protected, "rec.mp4", size)
    ((url, resource),) = uploads(traffic)
    assert f"kmsKeyName={requests.utils.quote(KMS_KEY, safe='')}" in url
    assert resource["retention"]["mode"] == "Locked"
    until = datetime.fromisoformat(resource["retention"]["retainUntilTime"])
    assert before + timedelta(days=7) <= until <= datetime.now(UTC) + timedelta(days=7)
    assert (resource["temporaryHold"], resource["eventBasedHold"]) == (True, True)


def test_an_unprotected_upload_carries_no_retention_but_the_kms_key(protected: GCSStorage) -> None:
    """`protect=False` (the probes, the manifests): no retention, no hold; the CMEK still applies."""
    traffic = watch(protected)
    upload(protected, "probe.txt", 100, protect=False)
    ((url, resource),) = uploads(traffic)
    assert "kmsKeyName=" in url
    assert not {"retention", "temporaryHold", "eventBasedHold"} & set(resource)


def test_the_emulator_keeps_none_of_it(protected: GCSStorage, gcs_emulator: str, bucket: str) -> None:
    """Measured: the stored resource has no retention, hold or KMS key; `protection` says so; the
    "retained" object is deleted on request; a bucket asked for object retention has none."""
    upload(protected, "rec.mp4", 1000)
    stored = object_resource(gcs_emulator, bucket, "p/rec.mp4")
    assert stored is not None
    assert not {"retention", "temporaryHold", "eventBasedHold", "kmsKeyName"} & set(stored)
    assert str(protected.protection("rec.mp4")) == "no retention, no hold"
    protected.delete("rec.mp4")
    assert list_objects(gcs_emulator, bucket) == []
    created = requests.post(f"{gcs_emulator}/storage/v1/b", params={"project": "test", "enableObjectRetention": "true"},
                            json={"name": "retention-asked"}, timeout=10).json()
    assert "objectRetention" not in created


def test_protection_reads_an_object_resource_as_gcs_gives_it() -> None:
    """Object retention, both holds and the generation; a bucket retention policy's expiry when the object
    has no retention of its own; nothing for a plain object."""
    found = protection_of({"generation": "1700000000000001", "temporaryHold": True, "eventBasedHold": True,
                           "retention": {"mode": "Locked", "retainUntilTime": "2033-01-02T03:04:05.678Z"}})
    assert (found.mode, found.holds, found.version) == ("Locked", ("temporary", "event_based"), "1700000000000001")
    assert found.retain_until == datetime(2033, 1, 2, 3, 4, 5, 678000, tzinfo=UTC) and found.locked()
    policy = protection_of({"generation": "2", "retentionExpirationTime": "2031-01-01T00:00:00Z"})
    assert (policy.mode, policy.retain_until) == ("bucket policy", datetime(2031, 1, 1, tzinfo=UTC))
    assert str(protection_of({"generation": "3"})) == "no retention, no hold"


@pytest.mark.parametrize("message", [
    "Object 'b/p/rec.mp4' is subject to object retention and cannot be deleted, overwritten or archived until "
    "2033-01-01T00:00:00Z",
    "Object 'b/p/rec.mp4' is under active Temporary hold and cannot be deleted, overwritten or archived until hold "
    "is removed.",
    "Object 'b/p/rec.mp4' is subject to bucket's retention policy and cannot be deleted, overwritten or archived "
    "until 2031-01-01T00:00:00Z",
])
def test_gcs_refusing_for_retention_or_a_hold_is_object_locked(message: str) -> None:
    """A 403 naming retention or a hold (a delete or an overwrite of a protected object) is ObjectLocked;
    any other 403 stays a permission error."""
    error = build("gcs storage 'g': upload gs://b/p/rec.mp4", 403, f"forbidden: {message}", "key", Scrubber())
    assert isinstance(error, ObjectLocked) and "retention period or a hold" in str(error)
    other = build("gcs storage 'g': upload gs://b/p/rec.mp4", 403,
                  "forbidden: x does not have storage.objects.create access", "key", Scrubber())
    assert isinstance(other, StorageRefused) and not isinstance(other, ObjectLocked) and other.reason == "permission"


def test_check_names_a_bucket_without_object_retention(protected: GCSStorage, gcs_emulator: str,
                                                        bucket: str) -> None:
    """With a retention period asked, the check reads the bucket first and stops, naming it; nothing is
    written."""
    report = check_storage(protected, TEST_TUNING, protect=True)
    assert (report.ok, report.reason) == (False, "retention_unsupported")
    assert bucket in (report.message or "") and "object retention enabled" in (report.message or "")
    assert list_objects(gcs_emulator, bucket) == []


def test_check_with_holds_only_reports_a_store_that_drops_them(gcs_emulator: str, bucket: str) -> None:
    """Holds need no bucket setting; the emulator drops them, and the check's write-once step says the
    store did not keep what was asked, and leaves nothing."""
    storage = gcs_storage(gcs_emulator, bucket, "p/", gcs_temporary_hold=True)
    try:
        assert storage.retention == Retention(holds=("temporary",)) and storage.write_once_problem() is None
        report = check_storage(storage, TEST_TUNING, protect=True)
    finally:
        storage.close()
    assert (report.ok, report.steps[-1].name) == (False, "write-once")
    assert "did not keep" in (report.message or "") and "temporary hold" in (report.message or "")
    assert list_objects(gcs_emulator, bucket) == [] and report.kept == ()


def test_startup_check_writes_no_retention(protected: GCSStorage, gcs_emulator: str, bucket: str) -> None:
    """The start-up check (not by hand) writes its probes without retention or holds, and passes."""
    traffic = watch(protected)
    report = check_storage(protected, TEST_TUNING)
    assert report.ok, report.message
    assert all(not {"retention", "temporaryHold"} & set(resource) for _, resource in uploads(traffic))
    assert list_objects(gcs_emulator, bucket) == []
