"""Start-up warnings about the ledger's Redis settings, from the real processes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import Archiver, local_storage

pytestmark = pytest.mark.e2e


def test_each_part_warns_at_start_that_the_ledger_redis_has_no_aof(
    archiver: Callable[..., Archiver], tmp_path: Path
) -> None:
    """The tests' Redis runs without AOF: web, worker and scheduler each say so, and start anyway."""
    service = archiver([local_storage(tmp_path / "disk")])
    service.start_all()
    for part in ("web", "worker", "scheduler"):
        warnings = [json.loads(line) for line in (service.log_dir / f"{part}.log").read_text().splitlines()
                    if '"redis_config_warning"' in line]
        assert [(w["setting"], w["value"], w["recommended"]) for w in warnings] == [("appendonly", "no", "yes")]
    assert service.get("/readyz").status_code == 200
