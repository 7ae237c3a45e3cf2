"""Stats reports, the files Stream's API serves itself (worker/transfer/api_source.py, worker/stream/client.py):
fetched through the Stream client, archived as served and verified; a session with no report is gone
(`lost` after the deadline). Real Redis, local disk, the fake Stream's API, in process."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.fakestream.reports import SessionReport
from tests.fakestream.server import FakeStream
from worker.errors import StorageUnavailable, StreamRefused
from worker.intake.record import record_routes
from worker.intake.webhook import ready_file
from worker.runtime import Runtime
from worker.storage.base import StoredObject
from worker.storage.local.storage import LocalStorage
from worker.transfer.run import run_transfer


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime], tmp_path: Path) -> Runtime:
    disks = [{"name": name, "storage_type": "local", "bucket": str(tmp_path / name)} for name in ("one", "two")]
    return make_runtime(*disks, default_storage=["one", "two"], kinds=["recording", "stats_report"],
                        retry_backoff="10s", retry_backoff_max="1m")


def record(runtime: Runtime, fake: FakeStream, report: SessionReport, created_at: datetime | None = None) -> list[str]:
    event = fake.stats_report_event(report)
    if created_at is not None:
        event["created_at"] = created_at.isoformat()
    file = ready_file(event)
    assert file is not None
    return record_routes(runtime.archive, runtime.ledger, file).transfer_ids


def test_the_client_fetches_a_sessions_report_as_served_with_its_credentials(runtime: Runtime,
                                                                             fake: FakeStream) -> None:
    report = fake.add_stats_report("default:fetched", session_id="s-1", participants=3)
    body = runtime.stream.file_from_api("default:fetched", "report", "s-1")
    assert fake.reports_served(report) == [body]
    request = fake.api_requests[-1]
    assert (request.method, request.path, request.query["session_id"]) == (
        "GET", "/api/v2/video/call/default/fetched/report", "s-1")
    assert request.headers["stream-auth-type"] == "jwt" and request.query["api_key"]
    assert json.loads(body)["report"]["participants"]["sum"] == 3


@pytest.mark.parametrize("missing_status", [404, 400])
def test_the_client_says_a_session_without_a_report_is_gone(runtime: Runtime, fake: FakeStream,
                                                            missing_status: int) -> None:
    fake.missing_status = missing_status
    fake.add_stats_report("default:partial", session_id="s-1")
    with pytest.raises(StreamRefused) as refused:
        runtime.stream.file_from_api("default:partial", "report", "s-other")
    assert refused.value.gone and (refused.value.status, refused.value.code) == (missing_status, 16)


def test_a_report_is_archived_at_every_destination_as_served_and_verified(runtime: Runtime, fake: FakeStream,
                                                                         tmp_path: Path) -> None:
    report = fake.add_stats_report("default:archived", session_id="s-1")
    for tid in record(runtime, fake, report):
        assert run_transfer(runtime, tid) == "archived"
        assert run_transfer(runtime, tid) == "archived"  # a second run fetches nothing
        transfer = runtime.ledger.get(tid)
        assert transfer is not None and transfer.key == "default/archived/stats_report_s-1.json"
        stored = (tmp_path / transfer.storage / transfer.key).read_bytes()
        assert stored in fake.reports_served(report)
        assert (transfer.bytes, transfer.sha256) == (len(stored), hashlib.sha256(stored).hexdigest())
        assert runtime.storage(transfer.storage).stat(transfer.key).content_type == "application/json"
    assert len(fake.reports_served(report)) == 2  # one GetCallReport per destination


def test_a_report_gone_after_its_deadline_is_lost_and_before_it_retried(runtime: Runtime, fake: FakeStream) -> None:
    report = fake.add_stats_report("default:gone", session_id="s-1")
    fresh = SessionReport("default:gone", "s-fresh", report.started_at, report.ended_at)  # never made
    old = SessionReport("default:gone", "s-old", report.started_at, report.ended_at)
    tid_fresh = record(runtime, fake, fresh)[0]
    tid_old = record(runtime, fake, old, created_at=datetime.now(UTC) - timedelta(days=15))[0]
    assert run_transfer(runtime, tid_fresh) == "retry"
    assert run_transfer(runtime, tid_old) == "lost"
    transfer = runtime.ledger.get(tid_old)
    assert transfer is not None and transfer.state == "lost" and "no stats_report of session s-old" in (
        transfer.error or "")



class ReadBackFailsOnce(LocalStorage):
    """Commits, then fails the first stat (the transfer's read-back): the object is there, the ledger
    never hears of it, as when a worker dies between the two."""

    failed = False

    def stat(self, key: str) -> StoredObject:
        if not self.failed and not key.startswith("archiver-"):
            self.failed = True
            raise StorageUnavailable("the read-back timed out", reason="unreachable")
        return super().stat(key)


def test_a_report_committed_then_fetched_again_with_other_bytes_is_archived_as_first_written(
        runtime: Runtime, fake: FakeStream, tmp_path: Path) -> None:
    """Stream serves a session's report with other bytes each time (its duration). An attempt that
    committed the report and failed before recording it noted what it committed; the retry fetches
    other bytes, finds its key taken by the noted ones and records those archived, not key_taken."""
    runtime._storages["one"] = ReadBackFailsOnce("one", tmp_path / "one")
    report = fake.add_stats_report("default:twice", session_id="s-1", participants=2)
    tid = next(t for t in record(runtime, fake, report) if (tr := runtime.ledger.get(t)) and tr.storage == "one")
    assert run_transfer(runtime, tid) == "retry"
    first = (tmp_path / "one" / "default/twice/stats_report_s-1.json").read_bytes()
    noted = runtime.ledger.get(tid)
    assert noted is not None and noted.noted_commit == (len(first), hashlib.sha256(first).hexdigest())
    fake.add_stats_report("default:twice", session_id="s-1", participants=7)  # other bytes from now on
    runtime.ledger.redis.hset(f"archiver:transfer:{tid}", "next_attempt_at", 0)
    with capture_logs() as logs:
        assert run_transfer(runtime, tid) == "archived"
    assert [e["noted"] for e in logs if e["event"] == "object_already_archived"] == [True]
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and transfer.sha256 == hashlib.sha256(first).hexdigest()
    assert (tmp_path / "one" / transfer.key).read_bytes() == first != fake.reports_served(report)[-1]
