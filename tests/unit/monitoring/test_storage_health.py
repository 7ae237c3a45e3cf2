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
