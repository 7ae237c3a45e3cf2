"""`check_storage`: passes on local disk and on moto; each way a store can fail gives its reason, a
message, and leaves no probe file behind (the fault proxy plays the store that refuses)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from mypy_boto3_s3 import S3Client

from config import CreateOnly, StorageConfig
from tests.support.faultproxy import FaultProxy, answer, reset, strip
from tests.support.moto import ACCESS_KEY, SECRET_KEY, TEST_TUNING, s3_config
from tests.support.ports import free_port
from worker.storage.local.storage import LocalStorage
from worker.storage.probe import CheckReport, check_storage
from worker.storage.registry import build_storage

BACKEND = "s3"

STEPS = ["write note", "write multipart", "stat", "create-only", "read back", "delete"]


def s3_check(endpoint: str, bucket: str, create_only: CreateOnly = "condition", **options: Any) -> CheckReport:
    """Build an S3 storage the way the service does, check it, close it."""
    base = s3_config(endpoint, bucket, "checks/")
    assert base.aws_s3 is not None
    aws = type(base.aws_s3).model_validate({**base.aws_s3.model_dump(), "s3_api_key": ACCESS_KEY,
                                            "s3_secret": SECRET_KEY, **options})  # fmt: skip
    config = StorageConfig.model_validate({**base.model_dump(), "aws_s3": aws, "create_only": create_only})
    storage = build_storage(config, TEST_TUNING)
    try:
        return check_storage(storage, TEST_TUNING)
    finally:
        storage.close()


def leftovers(client: S3Client, bucket: str) -> list[str]:
    """Objects and pending multipart uploads left in `bucket`."""
    objects = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return objects + [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def assert_failed(report: CheckReport, reason: str, step: str) -> None:
    """The check stopped at `step` with `reason` and a message naming the step and no credential."""
    assert (report.ok, report.reason) == (False, reason), report.message
    assert report.message and report.message.startswith(f"{step}: ")
    assert ACCESS_KEY not in report.message and SECRET_KEY not in report.message
    assert report.steps[-1].name == step and not report.steps[-1].ok
    assert all(s.ok for s in report.steps[:-1])


def test_passes_on_local_disk(tmp_path: Path) -> None:
    """On a local directory every step passes, each timed, and the directory is empty afterwards."""
    storage = LocalStorage("disk", tmp_path, "checks/")
    report = check_storage(storage, TEST_TUNING)
    assert (report.ok, report.reason, report.message) == (True, None, None)
    assert report.storage == "disk" and report.described == storage.describe()
    assert [s.name for s in report.steps] == STEPS
    assert all(s.ok and s.seconds >= 0 and s.detail for s in report.steps)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_by_hand_without_retention_settings_is_the_same_check(tmp_path: Path) -> None:
    """`archiver storage check` asks for the write-once proof (`protect=True`); a storage whose settings ask
    for no retention or hold gets the same steps, and nothing is kept."""
    storage = LocalStorage("disk", tmp_path, "checks/")
    report = check_storage(storage, TEST_TUNING, protect=True)
    assert report.ok and [s.name for s in report.steps] == STEPS and report.kept == ()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_passes_on_moto(moto_server: str, moto_client: S3Client, bucket: str) -> None:
    """On S3 every step passes: the multipart probe is three parts and its CRC32C matches at stat; a
    second write to the note's key is refused by If-None-Match (moto honours it)."""
    report = s3_check(moto_server, bucket)
    assert report.ok and [s.name for s in report.steps] == STEPS, report.message
    assert "3 parts" in report.steps[1].detail
    assert "crc32c matches" in report.steps[2].detail
    assert 'refused (create_only = "condition"), the note is intact' in report.steps[3].detail
    assert leftovers(moto_client, bucket) == []


def test_head_mode_on_a_store_honouring_the_condition_says_condition_would_be_better(
    moto_server: str, moto_client: S3Client, bucket: str
) -> None:
    """create_only = "head" passes, and the step says the store honours the condition itself."""
    report = s3_check(moto_server, bucket, create_only="head")
    assert report.ok, report.message
    assert 'refused (create_only = "head")' in report.steps[3].detail
    assert 'honours the create-only condition: create_only = "condition"' in report.steps[3].detail
    assert leftovers(moto_client, bucket) == []


def test_a_store_ignoring_the_condition_fails_the_check_until_head_mode(
    proxy: FaultProxy, moto_client: S3Client, bucket: str
) -> None:
    """A store that drops If-None-Match (it overwrites anyway) fails the check at "create-only", advising
    create_only = "head"; with it, the HEAD refuses the second write and the check passes, saying the
    store ignores the condition. No probe is left either way."""
    ignored = proxy.add(strip(r"^if-none-match: "))
    report = s3_check(proxy.url, bucket)
    assert_failed(report, "other", "create-only")
    assert 'set create_only = "head"' in (report.message or "") and ignored.seen
    assert leftovers(moto_client, bucket) == []
    report = s3_check(proxy.url, bucket, create_only="head")
    assert report.ok, report.message
    assert "the store ignores the create-only condition: HEAD-first is right for it" in report.steps[3].detail
    assert leftovers(moto_client, bucket) == []


def test_a_store_rejecting_the_condition_fails_the_first_write_until_head_mode(
    proxy: FaultProxy, moto_client: S3Client, bucket: str
) -> None:
    """A store that answers 501 NotImplemented to If-None-Match (AWS before August 2024) fails the check
    at the first write, permanently (reason "other"), with the advice; in mode "head" no request carries
    the condition but the check's own try of it, and the check passes saying the store rejects it."""
    rejected = proxy.add(answer(501, "NotImplemented", "A header you provided implies functionality that is not "
                                "implemented", header=r"^if-none-match: "))  # fmt: skip
    report = s3_check(proxy.url, bucket)
    assert_failed(report, "other", "write note")
    assert 'set create_only = "head"' in (report.message or "")
    report = s3_check(proxy.url, bucket, create_only="head")
    assert report.ok, report.message
    assert "the store rejects the create-only condition" in report.steps[3].detail
    assert len(rejected.seen) == 2  # the first check's first write, the second check's try
    assert leftovers(moto_client, bucket) == []


def test_unreachable_endpoint() -> None:
    """A closed port gives reason "unreachable" at the first write."""
    report = s3_check(f"http://127.0.0.1:{free_port()}", "any-bucket")
    assert_failed(report, "unreachable", "write note")


@pytest.mark.parametrize(
    ("code", "message", "reason"),
    [
        ("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.", "credentials"),
        ("SignatureDoesNotMatch", "The request signature we calculated does not match.", "credentials"),
        ("AccessDenied", "Access Denied", "permission"),
    ],
)
def test_refused_by_the_store(
    proxy: FaultProxy, moto_client: S3Client, bucket: str, code: str, message: str, reason: str
) -> None:
    """A store answering 403 to everything gives the reason its error code means, and nothing is left."""
    proxy.add(answer(403, code, message))
    report = s3_check(proxy.url, bucket)
    assert_failed(report, reason, "write note")
    assert code in (report.message or "")
    assert leftovers(moto_client, bucket) == []


def test_missing_bucket(moto_server: str) -> None:
    """A bucket that does not exist (real moto) gives reason "missing_bucket"."""
    report = s3_check(moto_server, "no-such-bucket-for-the-check")
    assert_failed(report, "missing_bucket", "write note")
    assert "NoSuchBucket" in (report.message or "")


def test_failure_late_still_removes_the_probes(proxy: FaultProxy, moto_client: S3Client, bucket: str) -> None:
    """A store that lets the writes through but refuses the read stops the check at "read back" with
    reason "permission"; both probe files are deleted anyway."""
    proxy.add(answer(403, "AccessDenied", "Access Denied", method="GET"))
    report = s3_check(proxy.url, bucket)
    assert_failed(report, "permission", "read back")
    assert leftovers(moto_client, bucket) == []


def test_connection_reset_during_a_part(proxy: FaultProxy, moto_client: S3Client, bucket: str) -> None:
    """A store that resets the connection on every try of the second part stops the check at
    "write multipart" with reason "unreachable"; the multipart upload is aborted and the note removed."""
    proxy.add(reset(method="PUT", path=r"partNumber=2"))
    report = s3_check(proxy.url, bucket)
    assert_failed(report, "unreachable", "write multipart")
    assert leftovers(moto_client, bucket) == []


def test_checksum_headers_rejected_then_when_required_passes(
    proxy: FaultProxy, moto_client: S3Client, bucket: str
) -> None:
    """A store that rejects x-amz-checksum-* headers (as R2 did) gives reason "checksum_rejected" with a
    hint to use when_required; with s3_request_checksum = "when_required" the same store passes."""
    rejected = proxy.add(answer(400, "InvalidArgument", "x-amz-checksum-crc32 header not supported",
                                header=r"^x-amz-checksum-"))  # fmt: skip
    report = s3_check(proxy.url, bucket)
    assert_failed(report, "checksum_rejected", "write note")
    assert "when_required" in (report.message or "") and len(rejected.seen) == 1
    report = s3_check(proxy.url, bucket, s3_request_checksum="when_required")
    assert report.ok and [s.name for s in report.steps] == STEPS, report.message
    assert len(rejected.seen) == 1
    assert leftovers(moto_client, bucket) == []


def test_wrong_checksum_reported_by_the_store(tmp_path: Path) -> None:
    """A store that reports another SHA-256 than the one written fails the check at "stat"."""

    class Lying(LocalStorage):
        def stat(self, key: str) -> Any:
            stored = super().stat(key)
            return type(stored)(stored.key, stored.size, checksums={"sha256": "0" * 64})

    report = check_storage(Lying("liar", tmp_path), TEST_TUNING)
    assert_failed(report, "other", "stat")
    assert "sha256" in (report.message or "")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert os.listdir(tmp_path) == []
