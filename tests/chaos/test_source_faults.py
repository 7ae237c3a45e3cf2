"""The source breaks mid-download: connections dropped and bodies cut short (fewer bytes than
Content-Length), with real `archiver` processes. Never stored as complete; resumed with Range."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from tests.chaos.conftest import ChaosArchiver, is_manifest
from tests.e2e.conftest import Archiver, local_storage
from tests.fakestream.server import FakeStream
from tests.support.chaos import SlowProxy
from tests.support.chaos_report import ChaosReport

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024


def test_bodies_cut_short_are_resumed_with_range_and_never_stored_short(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path, chaos_report: ChaosReport,
) -> None:
    root = tmp_path / "archive"
    service = archiver([local_storage(root)], call_storage_key="")
    url = service.start_all()
    recordings = [fake.add_recording(f"default:cut-{n}", os.urandom(3 * MiB + n)) for n in range(3)]
    for recording in recordings:
        fake.truncate_next(recording.filename, after_bytes=MiB, count=2)  # twice: the resume breaks too
    started = time.monotonic()
    for recording in recordings:
        assert fake.deliver(url, recording).status_code == 202
    archived = service.wait_for_states(len(recordings))
    recovered = time.monotonic() - started

    for recording in recordings:
        (entry,) = [t for t in archived if t["filename"] == recording.filename]
        assert (root / entry["key"]).read_bytes() == recording.read_bytes()
        assert entry["sha256"] == recording.sha256 and entry["attempts"] == 1  # resumed within the attempt
        ranges = [h.get("range", "") for method, path, h in fake.cdn_requests
                  if method == "GET" and path.endswith(recording.filename)]
        assert ranges[0] == "" and all(r.startswith("bytes=") and not r.startswith("bytes=0-") for r in ranges[1:])
    stored = [p for p in root.rglob("*") if p.is_file() and not is_manifest(p.name)]
    assert len(stored) == len(recordings)  # no partial or temporary file anywhere
    assert "download_resumed" in service.logs()
    chaos_report.record("source body cut short / connection dropped (twice per file)", sent=len(recordings),
                        archived=len(archived), duplicates=len(stored) - len(recordings), recover_seconds=recovered)


def test_a_url_that_expires_mid_transfer_is_refreshed_and_the_transfer_goes_on(
    chaos_archiver: Callable[..., ChaosArchiver], slow_cdn: Callable[[int], SlowProxy], fake: FakeStream,
    tmp_path: Path, chaos_report: ChaosReport,
) -> None:
    """A slow download on a URL that lives 2 s, cut after 1 MiB (4 s in): the resume finds the URL
    expired (403), asks Stream for a fresh one and goes on from the same byte."""
    root = tmp_path / "archive"
    proxy = slow_cdn(256 * 1024)
    service = chaos_archiver([local_storage(root)], proxy, call_storage_key="")
    url = service.start_web()
    service.start_worker("worker-a")
    recording = fake.add_recording("default:expiring-mid", os.urandom(2 * MiB + 11))
    fake.truncate_next(recording.filename, after_bytes=MiB)
    started = time.monotonic()
    short_lived = proxy.url_for(fake.signed_url(recording, timedelta(seconds=2)))
    assert fake.deliver(url, recording, url=short_lived).status_code == 202
    (entry,) = service.wait_for_states(1, timeout=60)
    recovered = time.monotonic() - started

    assert (root / entry["key"]).read_bytes() == recording.read_bytes() and entry["attempts"] == 1
    assert "download_url_refreshed" in service.logs() and "download_resumed" in service.logs()
    assert [r.path for r in fake.api_requests if r.path.endswith("/recordings")] == [
        "/api/v2/video/call/default/expiring-mid/recordings"]
    stored = [p for p in root.rglob("*") if p.is_file() and not is_manifest(p.name)]
    chaos_report.record("signed URL expires mid-transfer", sent=1, archived=1, duplicates=len(stored) - 1,
                        recover_seconds=recovered)
