"""`archiver serve`, the README's run command: the whole service from two environment variables."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import API_KEY, API_SECRET
from tests.fakestream.server import FakeStream
from tests.support.ports import free_port, wait_for_port
from tests.support.processes import wait_until
from tests.support.settings import write_config
from worker.edge.web import paths

pytestmark = pytest.mark.e2e
BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("STREAM_", "ARCHIVER_", "REDIS_"))}


def test_without_stream_credentials_it_stops_and_names_them(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "worker.edge.cli.app", "serve"], env=BASE_ENV, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "STREAM_API_KEY" in result.stderr and "STREAM_API_SECRET" in result.stderr
    assert not (tmp_path / "archive").exists()


def test_a_bad_config_file_stops_it_with_the_field(tmp_path: Path) -> None:
    config = write_config(tmp_path / "bad.toml", {"default_storage": "nowhere"})
    env = BASE_ENV | {"STREAM_API_KEY": API_KEY, "STREAM_API_SECRET": API_SECRET, "ARCHIVER_CONFIG": str(config)}
    result = subprocess.run([sys.executable, "-m", "worker.edge.cli.app", "web"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert str(config) in result.stderr and "no storage named 'nowhere'" in result.stderr


def test_serve_starts_its_own_redis_and_archives_to_the_local_directory(tmp_path: Path, fake: FakeStream) -> None:
    redis_port, web_port = free_port(), free_port()
    # Only what the test needs on top of the defaults: the fake CDN's host, and quick sweeps.
    config = write_config(tmp_path / "archiver.toml", {"download_hosts": [fake.cdn_host], "sweep_every": "1s"})
    env = BASE_ENV | {"STREAM_API_KEY": API_KEY, "STREAM_API_SECRET": API_SECRET,
                      "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "ARCHIVER_CONFIG": str(config),
                      "STREAM_BASE_URL": fake.base_url,
                      "ARCHIVER_LOG_FORMAT": "json"}
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        serve = subprocess.Popen([sys.executable, "-m", "worker.edge.cli.app", "serve", "--port", str(web_port)],
                                 env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(web_port, timeout=60)
        webhook = f"http://127.0.0.1:{web_port}{paths.WEBHOOK}"
        wait_until(lambda: webhook in log.read_text(), timeout=20, message="the webhook URL to be printed")
        assert "started redis-server" in log.read_text()
        recording = fake.add_recording("default:serve", os.urandom(100_000))
        # 202, or 200 when the scheduler's reconciliation found the file in Stream's listing first
        assert fake.deliver(webhook, recording).status_code in (200, 202)
        stored = tmp_path / "archive" / "default" / "serve" / recording.filename
        wait_until(stored.exists, timeout=60, message="the recording in ./archive")
        assert stored.read_bytes() == recording.read_bytes()
        assert (tmp_path / ".archiver" / "redis" / "appendonlydir").exists(), "its Redis persists (AOF)"
    finally:
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0, log.read_text()[-3000:]
    with pytest.raises(TimeoutError):
        wait_for_port(redis_port, timeout=1)


def test_a_storage_that_cannot_be_built_stops_the_worker_at_start(tmp_path: Path) -> None:
    config = write_config(tmp_path / "ftp.toml", {
        "default_storage": "cloud",
        "storages": [{"name": "cloud", "storage_type": "ftp", "bucket": "b"}],
    })
    env = BASE_ENV | {"STREAM_API_KEY": API_KEY, "STREAM_API_SECRET": API_SECRET, "ARCHIVER_CONFIG": str(config)}
    result = subprocess.run([sys.executable, "-m", "worker.edge.cli.app", "worker"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "storages.cloud: unknown storage_type 'ftp'" in result.stderr


def test_serve_gives_its_start_up_advice_once_and_no_plain_text_banner(
        tmp_path: Path, fake: FakeStream, redis_url: str) -> None:
    """Against a Redis without AOF and with a short secret: one `redis_config_warning` (not one per
    part), one `stream_api_secret_short` and never PyJWT's warning (though the scheduler signs calls),
    and no Celery banner amid the JSON lines."""
    web_port = free_port()
    env = BASE_ENV | {"STREAM_API_KEY": API_KEY, "STREAM_API_SECRET": "tiny-s3cr3t", "REDIS_URL": redis_url,
                      "STREAM_BASE_URL": fake.base_url, "ARCHIVER_LOG_FORMAT": "json"}
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        serve = subprocess.Popen([sys.executable, "-m", "worker.edge.cli.app", "serve", "--port", str(web_port)],
                                 env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: " ready." in log.read_text() and "reconcile_discovery_failed" in log.read_text(),
                   timeout=60, message="the worker ready and the scheduler's first call to Stream")
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
    text = log.read_text()
    assert text.count('"redis_config_warning"') == 1 and '"component": "serve"' in text, text[-3000:]
    assert text.count('"stream_api_secret_short"') == 1, text[-3000:]
    assert "HMAC key" not in text and "InsecureKeyLengthWarning" not in text
    assert "[queues]" not in text and "-------------- celery@" not in text  # Celery's banner
