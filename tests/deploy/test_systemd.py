"""deploy/systemd: one unit per role, restarted on failure, hardened, given time to stop cleanly."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tests.deploy.files import SYSTEMD, duration_seconds, systemd_unit

UNITS = sorted(SYSTEMD.glob("*.service"))


def role(path: Path) -> str:
    return shlex.split(systemd_unit(path)["Service"]["ExecStart"])[1]


def test_a_unit_for_each_role() -> None:
    assert sorted(role(path) for path in UNITS) == ["scheduler", "web", "worker"]


@pytest.mark.parametrize("path", UNITS, ids=[p.name for p in UNITS])
def test_unit_is_restarted_and_hardened(path: Path) -> None:
    """Unit, Service and Install sections; a non-root user; Restart=on-failure except on a
    configuration error (exit 2); read-only system, no new privileges, no capabilities."""
    unit = systemd_unit(path)
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    service = unit["Service"]
    assert service["User"] not in ("", "root")
    assert service["Restart"] == "on-failure"
    assert "2" in service["RestartPreventExitStatus"].split()
    assert service["NoNewPrivileges"] == "true"
    assert service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "true"
    assert service["CapabilityBoundingSet"] == ""
    assert service["EnvironmentFile"].startswith("/etc/archiver/")
    assert unit["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.parametrize("path", UNITS, ids=[p.name for p in UNITS])
def test_stop_timeout_fits_the_role(path: Path) -> None:
    """The worker gets at least 5 minutes (Celery's warm shutdown), with SIGTERM to its main process
    only; the web receiver more than uvicorn's 20 s graceful shutdown."""
    service = systemd_unit(path)["Service"]
    timeout = duration_seconds(service["TimeoutStopSec"])
    if role(path) == "worker":
        assert timeout >= 300
        assert service["KillMode"] == "mixed"  # else the prefork children get SIGTERM and die mid-transfer
    else:
        assert timeout > 20


@pytest.mark.parametrize("path", UNITS, ids=[p.name for p in UNITS])
def test_only_roles_that_write_storages_may_write_files(path: Path) -> None:
    """Workers (transfers, start-up check) and the scheduler (health probes) may write a local-disk
    storage's root; the web receiver writes nothing."""
    service = systemd_unit(path)["Service"]
    if role(path) == "web":
        assert "ReadWritePaths" not in service
    else:
        assert service["ReadWritePaths"].split() == ["-/srv/recordings"]
