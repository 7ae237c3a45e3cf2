"""Two workers finishing files of one session at once (worker/sessions/manifest.py's claim): the manifest
written last lists every archived file. Two threads, each with its own Runtime (its own Redis connections),
on one real redis-server, local disk, the fake Stream's CDN."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.fakestream.models import StoredFile
from tests.fakestream.server import FakeStream
from worker.intake.record import record_routes
from worker.intake.webhook import ready_file
from worker.runtime import Runtime
from worker.sessions import manifest
from worker.transfer.run import run_transfer

CID = "default:m1"


def recorded(runtime: Runtime, fake: FakeStream, file: StoredFile) -> str:
    stream_file = ready_file(fake.event_for(file))
    assert stream_file is not None
    (tid,) = record_routes(runtime.archive, runtime.ledger, stream_file).transfer_ids
    return tid


def listed(root: Path, session_id: str) -> list[str]:
    body = json.loads((root / "default" / "m1" / f"manifest_{session_id}.json").read_bytes())
    return sorted(f["filename"] for f in body["files"])


def test_a_file_archived_while_the_manifest_is_being_written_is_in_the_manifest(
        make_runtime: Callable[..., Runtime], fake: FakeStream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        ) -> None:
    """Worker A has listed the session's files (the second not archived yet) and is writing; worker B archives
    the second file meanwhile and leaves the manifest to A (the lock is A's); A then writes it again, with it."""
    one, two = make_runtime(), make_runtime()
    first, second = (fake.add_recording(CID, bytes([n]) * 100, filename=f"rec_default_m1_{n}.mp4") for n in (1, 2))
    tid1, tid2 = recorded(one, fake, first), recorded(one, fake, second)
    a_listed, b_done = threading.Event(), threading.Event()
    original = manifest.archived_files

    def listing(runtime: Runtime, session: manifest.Session) -> list[dict[str, Any]]:
        files = original(runtime, session)
        if runtime is one and not a_listed.is_set():
            a_listed.set()
            assert b_done.wait(10), "worker B never finished"
        return files

    def worker_b() -> str:
        assert a_listed.wait(10), "worker A never listed the files"
        try:
            return run_transfer(two, tid2)
        finally:
            b_done.set()

    monkeypatch.setattr(manifest, "archived_files", listing)
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.submit(run_transfer, one, tid1), pool.submit(worker_b)
        assert (a.result(20), b.result(20)) == ("archived", "archived")
    assert first.session_id
    assert listed(tmp_path / "disk", first.session_id) == [first.filename, second.filename]
    assert not one.ledger.redis.exists(one.ledger.keys.manifest_lock(f"{CID}:{first.session_id}"))


def test_two_workers_archiving_one_sessions_files_at_once_leave_none_out(
        make_runtime: Callable[..., Runtime], fake: FakeStream, tmp_path: Path) -> None:
    """Free-running: two workers archive six files of one session side by side; the last manifest lists all."""
    runtimes = make_runtime(), make_runtime()
    files = [fake.add_recording(CID, bytes([n]) * 100, filename=f"rec_default_m1_{n}.mp4") for n in range(6)]
    tids = [recorded(runtimes[0], fake, file) for file in files]

    def work(runtime: Runtime, mine: list[str]) -> list[str]:
        return [run_transfer(runtime, tid) for tid in mine]

    with ThreadPoolExecutor(2) as pool:
        done = [pool.submit(work, runtime, tids[n::2]) for n, runtime in enumerate(runtimes)]
        assert all(f.result(30) == ["archived"] * 3 for f in done)
    assert files[0].session_id
    assert listed(tmp_path / "disk", files[0].session_id) == sorted(f.filename for f in files)
