"""`archiver storage list` and `archiver storage check NAME`, run as a user runs them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import Archiver, local_storage, s3_storage
from tests.support.moto import SECRET_KEY

pytestmark = pytest.mark.e2e


def test_storage_list_shows_types_buckets_prefixes_and_routes_without_secrets(
    archiver: Callable[..., Archiver], tmp_path: Path, moto_server: str, bucket: str
) -> None:
    service = archiver([local_storage(tmp_path / "disk"), s3_storage(moto_server, bucket)],
                       call_types={"allhands": ["s3", "disk"]})
    result = service.cli("storage", "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert rows["s3"]["storage_type"] == "s3" and rows["s3"]["bucket"] == bucket
    assert rows["s3"]["path"] == "recordings/" and rows["s3"]["endpoint"] == moto_server
    assert rows["s3"]["credentials"] == "access key ***"
    assert "default_storage" in rows["disk"]["routes"] and "call_types.allhands" in rows["s3"]["routes"]
    table = service.cli("storage", "list")
    assert table.returncode == 0 and "recordings/" in table.stdout
    assert SECRET_KEY not in result.stdout + table.stdout + result.stderr + table.stderr


def test_storage_check_passes_on_a_good_storage_and_cleans_up(
    archiver: Callable[..., Archiver], tmp_path: Path, moto_server: str, bucket: str
) -> None:
    service = archiver([s3_storage(moto_server, bucket)])
    result = service.cli("storage", "check", "s3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "archiver-check-" in result.stdout and "ok" in result.stdout
    from tests.support.moto import s3_client  # noqa: PLC0415

    assert s3_client(moto_server).list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_storage_check_fails_with_the_reason(archiver: Callable[..., Archiver], moto_server: str) -> None:
    service = archiver([s3_storage(moto_server, "no-such-bucket-for-check")])
    result = service.cli("storage", "check", "s3")
    assert result.returncode == 1
    assert "missing_bucket" in result.stderr and "no-such-bucket-for-check" in result.stderr
    assert SECRET_KEY not in result.stdout + result.stderr


def test_storage_check_of_an_unknown_name(archiver: Callable[..., Archiver], tmp_path: Path) -> None:
    service = archiver([local_storage(tmp_path / "disk")])
    result = service.cli("storage", "check", "nope")
    assert result.returncode == 2 and "no storage named 'nope'" in result.stderr


def test_storage_list_shows_create_only_retention_holds_and_encryption_keys(
    archiver: Callable[..., Archiver], tmp_path: Path, moto_server: str, bucket: str
) -> None:
    """Each storage's create_only mode, its retention and holds as its settings ask, and the key its store
    encrypts with (S3 SSE-KMS, GCS CMEK, an Azure encryption scope); none for plain local disk."""
    s3 = s3_storage(moto_server, bucket)
    s3["aws_s3"] |= {"s3_object_lock_mode": "COMPLIANCE", "s3_object_lock_days": 2555, "s3_legal_hold": True,
                     "s3_sse": "aws:kms", "s3_sse_kms_key_id": "arn:aws:kms:eu-west-1:111122223333:key/k1"}
    gcs = {"name": "gcs", "storage_type": "gcs", "bucket": "g", "gcs_retention_days": 1825,
           "gcs_retention_mode": "Locked", "gcs_temporary_hold": True, "gcs_endpoint_url": "http://127.0.0.1:9",
           "gcs_kms_key_name": "projects/p/locations/l/keyRings/r/cryptoKeys/k2"}
    abs_ = {"name": "abs", "storage_type": "abs", "bucket": "c", "create_only": "head",
            "azure_blob": {"abs_account_name": "a", "abs_account_key": "a2V5", "abs_immutability_days": 365,
                           "abs_immutability_mode": "Unlocked", "abs_encryption_scope": "cmk-scope"}}
    service = archiver([local_storage(tmp_path / "disk"), s3, gcs, abs_])
    result = service.cli("storage", "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert (rows["disk"]["create_only"], rows["disk"]["retention"], rows["disk"]["encryption"]) == \
        ("condition", None, None)
    assert rows["s3"]["retention"] == "COMPLIANCE for 2555 days, legal hold"
    assert rows["s3"]["encryption"] == "SSE aws:kms, key arn:aws:kms:eu-west-1:111122223333:key/k1"
    assert rows["gcs"]["retention"] == "Locked for 1825 days, temporary hold"
    assert rows["gcs"]["encryption"] == "CMEK projects/p/locations/l/keyRings/r/cryptoKeys/k2"
    assert (rows["abs"]["create_only"], rows["abs"]["retention"], rows["abs"]["encryption"]) == \
        ("head", "Unlocked for 365 days", "encryption scope cmk-scope")
    table = service.cli("storage", "list")
    assert table.returncode == 0 and "COMPLIANCE for 2555 days" in table.stdout and "cmk-scope" in table.stdout


def test_storage_check_proves_object_lock_and_says_the_probe_is_kept(
    archiver: Callable[..., Archiver], moto_server: str
) -> None:
    """On a bucket with Object Lock, `archiver storage check` proves the lock on its note and prints that
    the note stays until its retention ends; on a bucket without, it names the bucket as the reason."""
    from tests.support.moto import create_bucket, s3_client  # noqa: PLC0415

    client = s3_client(moto_server)
    locked, plain = create_bucket(client, object_lock=True), create_bucket(client)
    storages = []
    for name, bucket in (("locked", locked), ("plain", plain)):
        table = s3_storage(moto_server, bucket, name=name)
        table["aws_s3"] |= {"s3_object_lock_mode": "GOVERNANCE", "s3_object_lock_days": 1}
        storages.append(table)
    service = archiver(storages)
    result = service.cli("storage", "check", "locked")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "write-once" in result.stdout and "kept" in result.stdout and "stays until" in result.stdout
    listing = client.list_object_versions(Bucket=locked)
    assert [v["Key"] for v in listing.get("Versions", [])] == [next(
        v["Key"] for v in listing["Versions"] if v["Key"].endswith(".md"))]
    refused = service.cli("storage", "check", "plain")
    assert refused.returncode == 1 and "retention_unsupported" in refused.stderr and plain in refused.stderr
