"""`Retention` (what a storage's settings ask every write to carry) and `Protection` (what a store reports
an object carries): read from the configuration per store, dated from the write, shown in words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from config import StorageConfig
from worker.storage.base import Protection, Retention

NOW = datetime(2026, 12, 7, 10, 0, 0, 123456, tzinfo=UTC)


def config(**entry: Any) -> StorageConfig:
    return StorageConfig.model_validate({"name": "x", "bucket": "b", **entry})


@pytest.mark.parametrize(("entry", "expected"), [
    ({"storage_type": "s3", "aws_s3": {"s3_region": "r", "s3_object_lock_mode": "COMPLIANCE",
                                       "s3_object_lock_days": 2555, "s3_legal_hold": True}},
     Retention(2555, "COMPLIANCE", ("legal",))),
    ({"storage_type": "s3", "aws_s3": {"s3_region": "r", "s3_legal_hold": True}}, Retention(None, None, ("legal",))),
    ({"storage_type": "gcs", "gcs_retention_days": 30, "gcs_retention_mode": "Unlocked", "gcs_temporary_hold": True,
      "gcs_event_based_hold": True}, Retention(30, "Unlocked", ("temporary", "event_based"))),
    ({"storage_type": "abs", "azure_blob": {"abs_account_name": "a", "abs_immutability_days": 1,
                                            "abs_immutability_mode": "Locked"}}, Retention(1, "Locked")),
    ({"storage_type": "s3", "aws_s3": {"s3_region": "r", "s3_sse": "aws:kms"}}, None),
    ({"storage_type": "gcs", "gcs_kms_key_name": "projects/p/locations/l/keyRings/r/cryptoKeys/k"}, None),
    ({"storage_type": "local"}, None),
])
def test_each_store_reads_its_own_keys(entry: dict[str, Any], expected: Retention | None) -> None:
    """S3, GCS and Azure keys become one `Retention`; an encryption key alone, or local disk, asks none."""
    assert Retention.of(config(**entry)) == expected


def test_the_period_counts_from_the_write_in_whole_seconds_and_reads_in_words() -> None:
    retention = Retention(7, "GOVERNANCE", ("legal",))
    assert retention.until(NOW) == datetime(2026, 12, 14, 10, 0, 0, tzinfo=UTC)
    assert Retention(holds=("temporary",)).until(NOW) is None
    assert str(retention) == "GOVERNANCE for 7 days, legal hold"
    assert str(Retention(1, "Locked")) == "Locked for 1 day"
    assert str(Retention(holds=("event_based",))) == "event-based hold"


def test_a_protection_is_locked_while_retained_or_held() -> None:
    until = NOW + timedelta(days=1)
    assert Protection(until, "COMPLIANCE").locked(NOW) and not Protection(until, "COMPLIANCE").locked(until)
    assert Protection(holds=("legal",)).locked(NOW) and Protection(holds=("legal",)).legal_hold
    assert not Protection().locked(NOW) and str(Protection()) == "no retention, no hold"
    shown = str(Protection(until, "Locked", ("temporary",)))
    assert shown == "Locked until 2026-12-08T10:00:00.123456Z, temporary hold"
