"""Frame recordings end to end: `call.frame_recording_ready` with the kind enabled in `kinds` is archived
like any file (every destination, byte-identical, verified); with it not enabled (the default) the event
is answered 200, counted as ``ignored`` in /metrics, and nothing is recorded or downloaded.

Real processes: redis-server, `archiver web`, `archiver worker`, `archiver scheduler`, the fake Stream's
CDN and webhook sender.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Archiver, local_storage
from tests.fakestream.server import FakeStream
from tests.support.processes import wait_until
from worker.edge.web import paths

pytestmark = pytest.mark.e2e


def metric(service: Archiver, name: str, **labels: str) -> float | None:
    """One sample of a /metrics scrape (None when it is not there)."""
    for family in text_string_to_metric_families(service.get(paths.METRICS).text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def test_an_enabled_frame_recording_is_archived_byte_identical_at_every_destination(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path
) -> None:
    roots = [tmp_path / "one", tmp_path / "two"]
    service = archiver([local_storage(roots[0], "disk"), local_storage(roots[1], "disk2")],
                       default_storage=["disk", "disk2"], kinds=["recording", "transcription", "frame_recording"],
                       metrics_cache="0s")
    url = service.start_all()
    image = b"\xff\xd8\xff\xe0" + os.urandom(200_000)
    captured = datetime.now(UTC).replace(microsecond=0)
    frame = fake.add_frame_recording("default:frames-on", image, captured_at=captured, participant="alice",
                                     track_type="TRACK_TYPE_SCREEN_SHARE")
    assert fake.deliver(url, frame).status_code == 202

    archived = service.wait_for_states(2)
    assert sorted(t["storage"] for t in archived) == ["disk", "disk2"]
    for entry, root in zip(sorted(archived, key=lambda t: t["storage"]), roots, strict=True):
        assert (entry["kind"], entry["filename"], entry["session_id"]) == ("frame_recording", frame.filename,
                                                                          frame.session_id)
        assert entry["key"] == f"default/frames-on/{frame.filename}"
        assert (root / entry["key"]).read_bytes() == image
        assert (entry["bytes"], entry["sha256"]) == (frame.size, frame.sha256)
    assert fake.downloads_of(frame) == 2
    wait_until(lambda: metric(service, "archiver_files_received_total", kind="frame_recording") == 1, timeout=15,
               message="the frame counted in /metrics")


def test_a_frame_recording_not_enabled_is_answered_counted_and_not_recorded(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path
) -> None:
    service = archiver([local_storage(tmp_path / "archive")], metrics_cache="0s")  # kinds: the default
    url = service.start_all()
    frame = fake.add_frame_recording("default:frames-off", b"\xff\xd8jpeg")
    for _ in range(2):
        response = fake.deliver(url, frame)
        assert (response.status_code, response.json()["status"]) == (200, "ignored")
    wait_until(lambda: metric(service, "archiver_webhook_requests_total", outcome="ignored") == 2, timeout=15,
               message="the ignored frame events counted in /metrics")
    assert metric(service, "archiver_files_received_total", kind="frame_recording") is None
    assert service.transfers() == []
    assert fake.downloads_of(frame) == 0
    assert not [p for p in (tmp_path / "archive").rglob("*") if p.is_file()]
