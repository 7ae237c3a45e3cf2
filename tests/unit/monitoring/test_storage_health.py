"""The storages' health for /metrics (worker/monitoring/health.py): probed, and kept in Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from worker.monitoring.health import check_health
from worker.monitoring.stats import Stats
from worker.runtime import Runtime


def test_each_storage_is_probed_and_its_result_kept_without_leaving_a_file(make_settings: Any, tmp_path: Path,
                                                                            ledger: Any) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings = make_settings(default_storage="good", storages=[
        {"name": "good", "storage_type": "local", "bucket": str(tmp_path / "good"), "path": ""},
        {"name": "bad", "storage_type": "local", "bucket": str(blocker / "root"), "path": ""},
    ])
    Stats(ledger.redis).storage_checked("removed-from-config", True, None)
    runtime = Runtime.from_settings(settings)
    try:
        assert check_health(runtime) == {"good": True, "bad": False}
    finally:
        runtime.close()
    health = Stats(ledger.redis).storage_health()
    assert set(health) == {"good", "bad"}
    assert health["good"].ok and health["good"].reason is None
    assert not health["bad"].ok and health["bad"].reason
    assert [p for p in (tmp_path / "good").rglob("*") if p.is_file()] == []


def test_the_health_probe_leaves_no_locked_object_nor_version_in_an_object_lock_bucket(
    make_settings: Any, ledger: Any, moto_server: str, moto_client: Any
) -> None:
    """A storage whose writes carry COMPLIANCE retention and a legal hold: the periodic probe writes without
    them and deletes its exact version, so the versioned bucket stays empty (a plain delete would leave
    the version behind a delete marker)."""
    from tests.support.moto import ACCESS_KEY, REGION, SECRET_KEY, create_bucket  # noqa: PLC0415

    bucket = create_bucket(moto_client, object_lock=True)
    settings = make_settings(default_storage="worm", storages=[{
        "name": "worm", "storage_type": "s3", "bucket": bucket, "path": "p/",
        "aws_s3": {"s3_region": REGION, "s3_api_key": ACCESS_KEY, "s3_secret": SECRET_KEY,
                   "s3_custom_endpoint_url": moto_server, "s3_object_lock_mode": "COMPLIANCE",
                   "s3_object_lock_days": 30, "s3_legal_hold": True}}])
    runtime = Runtime.from_settings(settings)
    try:
        assert check_health(runtime) == {"worm": True}
    finally:
        runtime.close()
    listing = moto_client.list_object_versions(Bucket=bucket)
    assert listing.get("Versions", []) == [] and listing.get("DeleteMarkers", []) == []
