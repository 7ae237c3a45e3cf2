"""Signed URLs that expire before the worker gets to them, end to end: real `archiver web`, `archiver
worker` and `archiver scheduler` processes, redis-server, and the fake Stream's API and CDN."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Archiver, local_storage
from tests.fakestream.server import FakeStream
from tests.support.processes import wait_until

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024


def test_a_url_that_expired_before_the_worker_started_is_refreshed_and_archived(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path
) -> None:
    root = tmp_path / "archive"
    service = archiver([local_storage(root)])
    url = service.start_web()
    recording = fake.add_recording("default:expiring", os.urandom(2 * MiB + 7))
    short_lived = fake.signed_url(recording, timedelta(seconds=1))
    assert fake.deliver(url, recording, url=short_lived).status_code == 202
    wait_until(lambda: httpx.head(short_lived).status_code == 403, timeout=10, message="the URL to expire")

    service.start_worker()  # no scheduler: its reconciliation would bring a fresh URL from the listing first
    (entry,) = service.wait_for_states(1)
    assert (root / entry["key"]).read_bytes() == recording.read_bytes()
    assert (entry["bytes"], entry["sha256"]) == (recording.size, recording.sha256)
    assert [r.path for r in fake.api_requests if r.path.endswith("/recordings")] == [
        "/api/v2/video/call/default/expiring/recordings"]
    assert fake.downloads_of(recording) == 1
    logs = service.logs()
    assert "download_url_refreshed" in logs
    for secret in ("Signature=", "Expires="):
        assert secret not in logs, f"{secret!r} leaked into a log line"
