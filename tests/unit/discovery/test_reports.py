"""Stats reports discovery finds missing (worker/discovery/reports.py): one per session of the files a run
lists, asked for only when the ledger lacks it; a session with no report is skipped, not failed. The real
Redis, the fake Stream, in process."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from tests.fakestream.server import FakeStream
from worker.discovery.run import discover
from worker.files import StreamFile
from worker.intake.record import record_routes
from worker.intake.webhook import ready_file
from worker.runtime import Runtime

NOW = datetime.now(UTC)
SINCE = NOW - timedelta(days=14)
REPORT = "/report"


def reports_asked(fake: FakeStream, before: int = 0) -> list[str]:
    """The sessions GetCallReport was asked for since request `before`."""
    return [r.query.get("session_id", "") for r in fake.api_requests[before:] if r.path.endswith(REPORT)]


def call_with_two_sessions(fake: FakeStream, cid: str) -> datetime:
    """A call ended a minute ago with a recording in sessions s1 and s2, and a report of s1 only."""
    ended = NOW - timedelta(minutes=1)
    fake.add_call(*cid.split(":"), ended_at=ended)
    for session in ("s1", "s2"):
        fake.add_recording(cid, session.encode(), session_id=session, end_time=ended - timedelta(minutes=5),
                           filename=f"rec_{session}.mp4")
    fake.add_stats_report(cid, session_id="s1")
    return ended


def report_ids(runtime: Runtime) -> dict[str, str]:
    return {t.filename: t.state for t in runtime.ledger.iter_transfers() if t.kind == "stats_report"}


def test_a_missing_report_is_found_and_a_session_without_one_skipped(make_runtime: Callable[..., Runtime],
                                                                    fake: FakeStream) -> None:
    runtime = make_runtime(kinds=["recording", "stats_report"])
    call_with_two_sessions(fake, "default:sessions")
    summary = discover(runtime, since=SINCE)
    assert sorted(reports_asked(fake)) == ["s1", "s2"]
    assert report_ids(runtime) == {"stats_report_s1.json": "queued"}
    assert (summary.counts.new_files, summary.counts.failed_calls, summary.failed) == (3, 0, {})
    transfer = next(t for t in runtime.ledger.iter_transfers() if t.kind == "stats_report")
    file = runtime.ledger.file(transfer.file_id)
    recorded_end = datetime.fromtimestamp(int(file["end_time"]) / 1000, UTC)
    assert (file["session_id"], file["url"]) == ("s1", "")
    assert abs(recorded_end - (NOW - timedelta(minutes=6))) < timedelta(seconds=1)  # the session's files' end

    before = len(fake.api_requests)
    again = discover(runtime, since=SINCE)
    assert reports_asked(fake, before) == ["s2"]  # the known one is not asked for again; the skipped one is
    assert (again.counts.new_files, again.counts.files_found) == (0, 3)


def test_a_report_the_webhook_recorded_is_not_asked_for(make_runtime: Callable[..., Runtime],
                                                        fake: FakeStream) -> None:
    runtime = make_runtime(kinds=["recording", "stats_report"])
    call_with_two_sessions(fake, "default:heard")
    fake.add_stats_report("default:heard", session_id="s2")
    heard = ready_file(fake.stats_report_event(fake.add_stats_report("default:heard", session_id="s1")))
    assert isinstance(heard, StreamFile)
    record_routes(runtime.archive, runtime.ledger, heard)
    discover(runtime, since=SINCE)
    assert reports_asked(fake) == ["s2"]
    assert set(report_ids(runtime)) == {"stats_report_s1.json", "stats_report_s2.json"}


@pytest.mark.parametrize("kinds", [["recording"], ["recording", "transcription", "frame_recording"]])
def test_reports_are_not_asked_for_unless_enabled(make_runtime: Callable[..., Runtime], fake: FakeStream,
                                                  kinds: list[str]) -> None:
    runtime = make_runtime(kinds=kinds)
    call_with_two_sessions(fake, "default:off")
    discover(runtime, since=SINCE)
    assert reports_asked(fake) == [] and report_ids(runtime) == {}


def test_stream_failing_on_a_report_fails_the_call_to_be_retried(make_runtime: Callable[..., Runtime],
                                                                fake: FakeStream) -> None:
    runtime = make_runtime(kinds=["recording", "stats_report"])
    call_with_two_sessions(fake, "default:flaky")
    fake.fail_next_api("/default/flaky/report", 500, count=10)
    summary = discover(runtime, since=SINCE)
    assert summary.counts.failed_calls == 1 and "default:flaky" in summary.failed
