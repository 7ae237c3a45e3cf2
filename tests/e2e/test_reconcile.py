"""Reconciliation with the archiver's real processes: a killed `archiver reconcile --full` resumes
from its checkpoint, a reused call's new file is archived with its webhook missing, and a call whose
listing fails is listed in the summary without failing the command.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from tests.e2e.conftest import Archiver, local_storage
from tests.fakestream.server import FakeStream
from tests.support.faultproxy import FaultProxy, delay
from tests.support.processes import wait_until

pytestmark = pytest.mark.e2e
CHECKPOINT = "archiver:backfill:reconcile-full"


def seed_calls(fake: FakeStream, count: int) -> None:
    now = datetime.now(UTC)
    for n in range(count):
        ended = now - timedelta(days=13) + timedelta(minutes=n)
        fake.add_call("default", f"c{n:04d}", ended_at=ended)
        fake.add_recording(f"default:c{n:04d}", b"r%d" % n, end_time=ended)


def listed(fake: FakeStream, since: int = 0) -> list[str]:
    return [r.path for r in fake.api_requests[since:] if r.path.endswith("/recordings")]


def test_a_killed_full_run_resumes_from_its_checkpoint(archiver: Callable[..., Archiver], fake: FakeStream,
                                                       redis_url: str, tmp_path: Path) -> None:
    """SIGKILL after the first page is checkpointed; the next `reconcile --full` goes on from the
    saved cursor and lists no call of the pages done again."""
    seed_calls(fake, 250)
    service = archiver([local_storage(tmp_path / "archive")])
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    with FaultProxy(fake.base_url) as proxy:
        proxy.add(delay(0.01, path=r"/recordings"))  # slow enough to be killed mid-run
        service.env["STREAM_BASE_URL"] = proxy.url
        run = service.start("reconcile", "reconcile", "--full")
        wait_until(lambda: json.loads(client.get(CHECKPOINT) or "{}").get("counts", {}).get("pages", 0) >= 1,
                   timeout=30, interval=0.01, message="the first page checkpointed")
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        saved = json.loads(client.get(CHECKPOINT) or "{}")
        done = client.smembers(f"{CHECKPOINT}:calls")
        assert saved["cursor"] and len(done) >= 100 and client.hget("archiver:reconcile:marks", "watermark") is None
    before = len(fake.api_requests)
    service.env["STREAM_BASE_URL"] = fake.base_url  # straight to the fake: the rest at full speed

    resumed = service.cli("reconcile", "--full")
    assert resumed.returncode == 0, resumed.stderr
    later = [r for r in fake.api_requests[before:] if r.path == "/api/v2/video/calls"]
    assert json.loads(later[0].body).get("next") == saved["cursor"]
    again = {path.split("/")[5] + ":" + path.split("/")[6] for path in listed(fake, before)}
    assert not again & done and len(again | done) == 250
    assert len(service.transfers()) == 250 and client.exists(CHECKPOINT) == 0
    assert client.hget("archiver:reconcile:marks", "watermark") is not None


def test_a_reused_calls_new_file_is_archived_without_its_webhook(
        archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path) -> None:
    """A call that ended 20 days ago is joined again; its new recording (the call's `ended_at` still
    20 days old, `updated_at` fresh) reaches the archive through the scheduler's incremental run."""
    root = tmp_path / "archive"
    long_ago = datetime.now(UTC) - timedelta(days=20)
    fake.add_call("weekly", "standup", ended_at=long_ago)
    service = archiver([local_storage(root)], reconcile_every="1s")
    service.start_worker()
    service.start_scheduler()  # its first (full) run finds nothing
    fake.reuse_call("weekly:standup")
    new = fake.add_recording("weekly:standup", os.urandom(3000))  # its webhook never arrives
    call = fake.call("weekly:standup")
    assert call is not None and call.ended_at == long_ago
    (entry,) = service.wait_for_states(1)
    assert entry["filename"] == new.filename and (root / entry["key"]).read_bytes() == new.read_bytes()
    assert '"mode": "incremental"' in service.logs()


def test_reconcile_lists_a_failed_call_and_exits_0_and_exits_1_when_it_cannot_run(
        archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path) -> None:
    """A call whose listing fails is printed with its error (exit 0); QueryCalls refused: exit 1."""
    service = archiver([local_storage(tmp_path / "archive")])
    seed_calls(fake, 3)
    fake.fail_next_api("/call/default/c0001/recordings", 500, count=4)
    result = service.cli("reconcile")
    assert result.returncode == 0, result.stderr
    assert "1 call(s) could not be listed" in result.stdout and "default:c0001" in result.stdout
    assert "calls failed (retried next run)" in result.stdout and len(service.transfers()) == 2

    fake.fail_next_api("/api/v2/video/calls", 401)
    refused = service.cli("reconcile")
    assert refused.returncode == 1 and "401" in refused.stderr
    healed = service.cli("reconcile")
    assert healed.returncode == 0 and "could not be listed" not in healed.stdout and len(service.transfers()) == 3
