"""Backfill end to end, with no webhook at all: `archiver backfill` finds every file the fake Stream
holds, a real worker and scheduler archive them byte for byte, and a second run queues nothing.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.conftest import Archiver, local_storage
from tests.fakestream.server import FakeStream, StoredFile

pytestmark = pytest.mark.e2e
Run = Callable[..., subprocess.CompletedProcess[str]]
def seed(fake: FakeStream) -> list[StoredFile]:
    """8 calls ended over the last days, each with 3 recordings and a transcription (32 small files)."""
    now, files = datetime.now(UTC), []
    for n in range(8):
        cid, ended = f"default:team-{n}", now - timedelta(days=n, hours=1)
        fake.add_call("default", f"team-{n}", ended_at=ended)
        files.append(fake.add_recording(cid, os.urandom(2000 + n), end_time=ended))
        files.append(fake.add_recording(cid, os.urandom(3000), end_time=ended, recording_type="individual"))
        files.append(fake.add_recording(cid, os.urandom(1000), end_time=ended, audio_only=True))
        files.append(fake.add_transcription(cid, b'{"type":"speech","text":"hi"}\n' * (n + 1), end_time=ended))
    return files


def table(stdout: str) -> dict[str, str]:
    """The rows of a printed summary table: label → value."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃").split("│")]
        if len(cells) == 2 and cells[0]:
            rows[cells[0]] = cells[1]
    return rows


def test_backfill_archives_every_file_and_a_second_run_queues_nothing(
        archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    service = archiver([local_storage(root)])
    run = service.cli
    files = seed(fake)

    dry = run("backfill", "--since", "14d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("would record default:team-") == 32 and service.transfers() == []
    assert table(dry.stdout)["would queue"] == "32"

    service.start_worker()  # no scheduler: its own reconciliation would find the files first
    first = run("backfill", "--since", "14d")
    assert first.returncode == 0, first.stderr
    counts = table(first.stdout)
    assert (counts["calls seen"], counts["files found"], counts["new"], counts["queued"]) == ("8", "32", "32", "32")
    assert (counts["already archived"], counts["at risk (< 48h)"]) == ("0", "0")
    archived = service.wait_for_states(32)
    for file in files:
        (entry,) = [t for t in archived if t["filename"] == file.filename]
        assert (root / entry["key"]).read_bytes() == file.read_bytes()

    second = run("backfill", "--since", "14d")
    assert second.returncode == 0, second.stderr
    counts = table(second.stdout)
    assert (counts["new"], counts["queued"], counts["already archived"]) == ("0", "0", "32")
    assert counts["bytes archived"].startswith(f"{sum(f.size for f in files)} ")
    reconciled = run("reconcile")
    assert reconciled.returncode == 0, reconciled.stderr
    assert "handed 0 transfer(s)" in reconciled.stdout and "0 file(s) at risk" in reconciled.stdout


def test_backfill_exits_1_when_stream_fails_and_2_on_bad_arguments(
        archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path) -> None:
    service = archiver([local_storage(tmp_path / "archive")])
    run = service.cli
    fake.add_recording("default:one", b"x")

    fake.fail_next_api("/api/v2/video/calls", 401, count=1)
    refused = run("backfill", "--since", "2d")
    assert refused.returncode == 1 and "401" in refused.stderr and "injected failure 401" in refused.stderr
    for bad in (["--since", "last tuesday"], ["--kinds", "video"], ["--call", "no-colon"],
                ["--since", "2d", "--until", "3d"]):
        result = run("backfill", *bad)
        assert result.returncode == 2 and "bad arguments" in result.stderr, (bad, result.stderr)
    assert service.transfers() == []


def test_with_no_webhook_at_all_the_scheduler_alone_archives_every_file(
        archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    service = archiver([local_storage(root)], reconcile_every="2s")
    files = seed(fake)
    service.start_worker()
    service.start_scheduler()
    archived = service.wait_for_states(len(files))
    assert {t["filename"] for t in archived} == {f.filename for f in files}
    late = fake.add_recording("default:team-0", os.urandom(500))  # its webhook never arrives
    (entry,) = [t for t in service.wait_for_states(len(files) + 1) if t["filename"] == late.filename]
    assert (root / entry["key"]).read_bytes() == late.read_bytes()
