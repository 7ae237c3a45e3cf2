"""Start-up warnings about the ledger's Redis settings, from the real processes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import Archiver, local_storage
from tests.support.processes import wait_until
from worker.edge.web import paths

pytestmark = pytest.mark.e2e


def test_each_part_warns_at_start_that_the_ledger_redis_has_no_aof(
    archiver: Callable[..., Archiver], tmp_path: Path
) -> None:
    """The tests' Redis runs without AOF: web, worker and scheduler each say so, and start anyway."""
    service = archiver([local_storage(tmp_path / "disk")])
    service.start_all()
    for part in ("web", "worker", "scheduler"):
        log = service.log_dir / f"{part}.log"
        # start_all does not wait for the worker: under load its first lines may still be coming
        wait_until(lambda: '"redis_config_warning"' in log.read_text(errors="replace"), timeout=30,  # noqa: B023
                   message=f"the {part}'s start-up warning")
        warnings = [json.loads(line) for line in log.read_text().splitlines() if '"redis_config_warning"' in line]
        assert [(w["setting"], w["value"], w["recommended"]) for w in warnings] == [("appendonly", "no", "yes")]
    assert service.get(paths.READYZ).status_code == 200
