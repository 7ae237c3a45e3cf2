"""`archiver try` against the real service, as a new user runs it: `archiver serve` with the default
configuration (no TOML: ./archive, call-level routing on) and made-up Stream credentials, no Stream."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.ports import free_port, wait_for_port
from tests.support.processes import ArchiverProcesses, wait_until
from worker.edge.web import paths

pytestmark = pytest.mark.e2e
BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("STREAM_", "ARCHIVER_", "REDIS_"))}
ARCHIVED = re.compile(r"^(recording|transcription) +archived to (\S+): (.+)\n +sha256 ([0-9a-f]{64}), (\d+) bytes$",
                      re.MULTILINE)


def made_up(redis_url: str, secret: str = "trysecret") -> dict[str, str]:
    """Made-up credentials; Stream's API on a closed local port (no Stream, and no network in tests)."""
    return BASE_ENV | {"STREAM_API_KEY": "trykey", "STREAM_API_SECRET": secret, "REDIS_URL": redis_url,
                       "STREAM_BASE_URL": f"http://127.0.0.1:{free_port()}"}


def run_try(env: dict[str, str], cwd: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "worker.edge.cli.app", "try", *args], env=env, cwd=cwd,
                            capture_output=True, text=True, timeout=90, check=False)
    return result, time.monotonic() - started


@pytest.fixture
def serve(tmp_path: Path, redis_url: str) -> Iterator[str]:
    """`archiver serve` with the default configuration, its worker ready; yields the webhook URL."""
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "worker.edge.cli.app", "serve", "--port", str(port)],
                                   env=made_up(redis_url) | {"ARCHIVER_LOG_FORMAT": "json"}, cwd=tmp_path,
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=60)
        wait_until(lambda: "ready." in log.read_text(errors="replace"), timeout=60, message="the worker")
        yield f"http://127.0.0.1:{port}{paths.WEBHOOK}"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def test_try_archives_both_samples_and_prints_where_and_their_sha256(serve: str, tmp_path: Path,
                                                                     redis_url: str) -> None:
    result, took = run_try(made_up(redis_url), tmp_path, "--url", serve)
    assert result.returncode == 0, result.stdout + result.stderr + (tmp_path / "serve.log").read_text()[-4000:]
    archived = {m[1]: m for m in ARCHIVED.finditer(result.stdout)}
    assert set(archived) == {"recording", "transcription"}, result.stdout
    for kind, storage, where, sha256, size in (m.groups() for m in archived.values()):
        path = Path(where)
        assert storage == "local" and path.is_relative_to(tmp_path / "archive" / "default"), where
        assert path.parent.name.startswith("archiver-try-")  # the trial's own call: default:archiver-try-<id>
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha256 and len(data) == int(size), kind
    assert "both files archived" in result.stdout
    assert took < 10, f"archiver try took {took:.1f} s"


@pytest.fixture
def web_only(tmp_path: Path, redis_url: str) -> Iterator[str]:
    """The receiver alone (no worker), with the secret "the-service-secret"; yields the webhook URL."""
    web = ArchiverProcesses(made_up(redis_url, secret="the-service-secret"), tmp_path / "run")
    try:
        yield web.start_web()
    finally:
        web.stop_all()


def test_a_wrong_secret_is_reported_with_the_receivers_401(web_only: str, tmp_path: Path, redis_url: str) -> None:
    result, _ = run_try(made_up(redis_url, secret="another-secret"), tmp_path, "--url", web_only)
    assert result.returncode == 1
    assert "the receiver refused the webhook (401): X-Signature does not match the body" in result.stderr
    assert "STREAM_API_SECRET" in result.stderr and "archived to" not in result.stdout


def test_without_a_worker_it_stops_at_its_timeout_saying_where_the_files_wait(web_only: str, tmp_path: Path,
                                                                            redis_url: str) -> None:
    result, took = run_try(made_up(redis_url, secret="the-service-secret"), tmp_path, "--url", web_only,
                           "--timeout", "2")
    assert result.returncode == 1 and took < 10
    assert result.stdout.count("NOT archived: routing: waiting for its destinations") == 2, result.stdout
    assert "is `archiver worker` running?" in result.stdout
    assert "not archived in time (--timeout)" in result.stderr
    assert redis_keys(redis_url) == [], "its permissions are gone when it ends"


def test_an_unreachable_receiver_is_named_with_how_to_start_it(tmp_path: Path, redis_url: str) -> None:
    url = f"http://127.0.0.1:{free_port()}{paths.WEBHOOK}"
    result, _ = run_try(made_up(redis_url), tmp_path, "--url", url)
    assert result.returncode == 3
    assert f"cannot reach the receiver at {url}" in result.stderr and "scripts/run" in result.stderr
    assert redis_keys(redis_url) == [], "its permissions are gone when it ends"


def redis_keys(url: str) -> list[str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return sorted(str(k) for k in client.keys("archiver:trial_permit:*"))
    finally:
        client.close()
