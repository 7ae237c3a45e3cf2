"""The health checks in the Dockerfile and Compose file work: run against the real processes, they
pass while the role is healthy and fail when it is not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import API_KEY, API_SECRET
from tests.deploy.files import compose_services, dockerfile_instructions
from tests.support.ports import free_port
from tests.support.processes import ArchiverProcesses, wait_until

pytestmark = pytest.mark.e2e
BIN = str(Path(sys.executable).parent)


@pytest.fixture
def processes(tmp_path: Path, redis_url: str) -> Iterator[ArchiverProcesses]:
    """The archiver's environment (a real Redis, a local-disk storage); nothing started yet."""
    config = tmp_path / "archiver.toml"
    config.write_text(f'default_storage = "disk"\n[[storages]]\nname = "disk"\nstorage_type = "local"\n'
                      f'bucket = "{tmp_path / "archive"}"\n')
    env = {"STREAM_API_KEY": API_KEY, "STREAM_API_SECRET": API_SECRET, "REDIS_URL": redis_url,
           "ARCHIVER_CONFIG": str(config), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "HOSTNAME": ""}  # as in `podman exec`, which runs podman's health checks
    running = ArchiverProcesses(env, tmp_path / "run")
    yield running
    running.stop_all()


def run_check(test: list[str], processes: ArchiverProcesses, port: int | None = None) -> int:
    """Run a Docker/Compose health check command the way the engine would, on this machine."""
    if test[0] == "CMD-SHELL":
        argv = ["sh", "-c", test[1].replace("$$", "$")]
    else:
        argv = test[1:] if test[0] == "CMD" else test
    argv = [a.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for a in argv]
    result = subprocess.run(argv, env=processes.env, capture_output=True, text=True, timeout=60, check=False,
                            cwd=processes.log_dir)
    return result.returncode


def test_web_checks_pass_while_serving_and_fail_once_stopped(processes: ArchiverProcesses) -> None:
    """The image's HEALTHCHECK (/healthz) and Compose's web check (/readyz) pass against a running
    receiver and fail when it is gone."""
    port = free_port()
    processes.web_port = port
    processes.start_web()
    image_check = ["CMD", *json.loads(dict(dockerfile_instructions())["HEALTHCHECK"].split(" CMD ", 1)[1])]
    compose_check = compose_services()["web"]["healthcheck"]["test"]
    assert run_check(image_check, processes, port) == 0
    assert run_check(compose_check, processes, port) == 0
    processes.stop("web")
    assert run_check(image_check, processes, port) != 0
    assert run_check(compose_check, processes, port) != 0


def test_scheduler_check_follows_redis(processes: ArchiverProcesses) -> None:
    """Compose's scheduler check passes while Redis answers and fails when it does not."""
    check = compose_services()["scheduler"]["healthcheck"]["test"]
    assert run_check(check, processes) == 0
    processes.env["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    assert run_check(check, processes) != 0


def test_worker_check_pings_the_running_worker(processes: ArchiverProcesses) -> None:
    """Compose's worker check (a Celery ping to celery@$(hostname)) passes once the worker is up, and
    fails when no worker answers, even with HOSTNAME empty (podman)."""
    check = compose_services()["worker"]["healthcheck"]["test"]
    assert run_check(check, processes) != 0
    processes.start_worker(concurrency=1)
    # Each ping before the worker answers waits out the check's own --timeout (10 s): ping once Celery
    # says it is ready (retried, should its control channel lag behind).
    log = processes.log_dir / "worker.log"
    wait_until(lambda: " ready." in log.read_text(errors="replace"), timeout=90, message="the worker ready")
    wait_until(lambda: run_check(check, processes) == 0, timeout=90, interval=1, message="the worker's ping")
