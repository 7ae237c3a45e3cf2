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
