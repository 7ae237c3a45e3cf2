"""Delete after archive with real processes: the scheduler deletes only what is archived everywhere."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import Archiver, local_storage
from tests.fakestream.server import FakeStream
from tests.support.processes import wait_until

pytestmark = pytest.mark.e2e


def test_the_scheduler_deletes_from_stream_once_every_destination_verified(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path
) -> None:
    service = archiver([local_storage(tmp_path / "a", "a"), local_storage(tmp_path / "b", "b")],
                       default_storage=["a", "b"], delete_from_stream=True, reconcile_every="1s")
    recording = fake.add_recording("default:cleanup", os.urandom(20_000))
    url = service.start_web()
    assert fake.deliver(url, recording).status_code == 202
    preview = service.cli("delete-archived", "--dry-run")
    assert preview.returncode == 0 and "0 file(s) would be deleted" in preview.stdout  # nothing archived yet
    assert any(f.filename == recording.filename for f in fake.files("default:cleanup"))

    service.start_worker()
    service.start_scheduler()
    service.wait_for_states(2)
    wait_until(lambda: not fake.files("default:cleanup"), timeout=30, message="the recording deleted from Stream")
    for root in ("a", "b"):
        assert (tmp_path / root / "default" / "cleanup" / recording.filename).read_bytes() == recording.read_bytes()
    assert "recording_deleted_from_stream" in service.logs()
