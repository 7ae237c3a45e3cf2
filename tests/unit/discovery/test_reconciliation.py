"""Reconciliation (worker/discovery/reconcile.py): incremental and full runs, the watermark, reused calls
and failed calls; the real Redis and the fake Stream, in process."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tests.fakestream.server import FakeStream
from worker.clock import rfc3339, to_ms
from worker.discovery.reconcile import full_due, reconcile
from worker.discovery.reconcile_state import FailedCalls, completed, read_marks, watermark_ms
from worker.runtime import Runtime

QUERY_CALLS = "/api/v2/video/calls"


def now() -> datetime:
    return datetime.now(UTC)


def ended_calls(fake: FakeStream, count: int, *, prefix: str, ago: timedelta) -> list[str]:
    """`count` calls with one recording each, ended `ago` (and a minute more per call) before now."""
    cids = []
    for n in range(count):
        cid, ended = f"default:{prefix}{n:04d}", now() - ago - timedelta(minutes=n)
        fake.add_call("default", f"{prefix}{n:04d}", ended_at=ended)
        fake.add_recording(cid, b"r%d" % n, end_time=ended)
        cids.append(cid)
    return cids


def requests_during(fake: FakeStream, run: Callable[[], object]) -> tuple[int, int]:
    """(QueryCalls requests, list requests) that `run` made at the fake."""
    before = len(fake.api_requests)
    run()
    made = fake.api_requests[before:]
    return (sum(r.path == QUERY_CALLS for r in made),
            sum(r.path.endswith(("/recordings", "/transcriptions")) for r in made))


def filenames(runtime: Runtime) -> set[str]:
    return {t.filename for t in runtime.ledger.iter_transfers()}


def test_an_incremental_run_costs_what_changed_not_the_window(runtime: Runtime, fake: FakeStream) -> None:
    """After a first run over 300 calls, an incremental run after N new calls makes 3 QueryCalls
    requests (one page per field) and lists only the calls changed since the last run less the
    overlap: it grows with N, not with the window."""
    ended_calls(fake, 300, prefix="old", ago=timedelta(hours=3))
    first = requests_during(fake, lambda: reconcile(runtime, lambda ids: None))
    assert first[1] == 2 * 300  # no watermark yet: the whole retention window

    costs = {}
    for n in (5, 40):
        ended_calls(fake, n, prefix=f"new{n}-", ago=timedelta(seconds=5))
        costs[n] = requests_during(fake, lambda: reconcile(runtime, lambda ids: None))
    assert costs == {5: (3, 2 * 5), 40: (3, 2 * (40 + 5))}  # the overlap (1 h) lists the 5 again
    assert len(filenames(runtime)) == 345


def test_the_watermark_moves_only_when_a_run_completes(make_runtime: Callable[..., Runtime],
                                                       fake: FakeStream) -> None:
    """No watermark: the window is `retention`; a completed run sets it to its start; a run that
    could not complete leaves it; the next run looks back from it less `reconcile_overlap`; a full
    run sets it too, and the completion times only move forward."""
    runtime = make_runtime(reconcile_overlap="30m")
    assert watermark_ms(runtime.ledger) is None
    start = now()
    first = reconcile(runtime, lambda ids: None, now=start)
    assert first.mode == "incremental" and first.since == datetime.fromtimestamp(to_ms(start - timedelta(days=14))
                                                                                  / 1000, UTC)
    assert watermark_ms(runtime.ledger) == to_ms(start)

    fake.fail_next_api(QUERY_CALLS, 400)
    failed = reconcile(runtime, lambda ids: None, now=start + timedelta(minutes=15))
    assert failed.stream_error is not None and watermark_ms(runtime.ledger) == to_ms(start)

    later = start + timedelta(minutes=30)
    again = reconcile(runtime, lambda ids: None, now=later)
    assert again.stream_error is None and again.since == datetime.fromtimestamp(
        to_ms(start - timedelta(minutes=30)) / 1000, UTC)
    body = json.loads(next(r.body for r in reversed(fake.api_requests) if r.path == QUERY_CALLS
                           and b"ended_at" in r.body))
    assert body["filter_conditions"]["ended_at"] == {"$gte": rfc3339(again.since)}
    assert watermark_ms(runtime.ledger) == to_ms(later)

    full = reconcile(runtime, lambda ids: None, full=True, now=later + timedelta(minutes=5))
    assert full.mode == "full" and watermark_ms(runtime.ledger) == to_ms(later + timedelta(minutes=5))
    marks = read_marks(runtime.ledger.redis, runtime.ledger.prefix)
    assert set(marks.completed_at_ms) == {"incremental", "full"} and not full_due(runtime)
    reconcile(runtime, lambda ids: None, now=start)  # a slow run that started earlier completes late
    assert watermark_ms(runtime.ledger) == to_ms(later + timedelta(minutes=5))
    assert full_due(runtime, now() + timedelta(hours=24))


def test_a_reused_call_is_found_by_updated_at_and_its_file_judged_by_its_own_end(
        runtime: Runtime, fake: FakeStream) -> None:
    """A call that ended 30 days ago is joined again: its new file (recent end, the call's `ended_at`
    left 30 days old, `updated_at` fresh) is recorded by an incremental run with its deletion 14 days
    after its own end; the old session's file, deleted by Stream, is not."""
    long_ago = now() - timedelta(days=30)
    fake.add_call("weekly", "standup", ended_at=long_ago)
    old = fake.add_recording("weekly:standup", b"old session", end_time=long_ago)
    fake.delete_file(old)  # Stream's retention deleted it long ago
    reconcile(runtime, lambda ids: None)  # the watermark is set; nothing found
    assert filenames(runtime) == set()

    session = fake.reuse_call("weekly:standup")
    new = fake.add_recording("weekly:standup", b"new session", end_time=now() - timedelta(minutes=1))
    call = fake.call("weekly:standup")
    assert call is not None and new.session_id == session == call.session_id
    assert call.ended_at == long_ago and call.updated_at >= new.end_time
    summary = reconcile(runtime, lambda ids: None)
    assert summary.discovery is not None and summary.discovery.counts.new_files == 1
    (transfer,) = runtime.ledger.iter_transfers()
    assert transfer.filename == new.filename and transfer.expires_at is not None
    assert abs(transfer.expires_at - (new.end_time + timedelta(days=14))) < timedelta(seconds=1)


def test_a_full_run_finds_a_reused_call_its_incremental_run_missed(runtime: Runtime, fake: FakeStream) -> None:
    """A reused call whose change is older than the watermark less its overlap (its incremental run
    was missed) is found by the next full run through `updated_at` in the window."""
    fake.add_call("weekly", "retro", ended_at=now() - timedelta(days=30))
    fake.reuse_call("weekly:retro", at=now() - timedelta(days=2))
    new = fake.add_recording("weekly:retro", b"two days ago", end_time=now() - timedelta(days=2))
    completed(runtime.ledger, "incremental", to_ms(now()), 0)  # a run completed since, without it

    missed = reconcile(runtime, lambda ids: None)
    assert missed.discovery is not None and missed.discovery.counts.calls_seen == 0
    full = reconcile(runtime, lambda ids: None, full=True)
    assert full.discovery is not None and full.discovery.counts.new_files == 1
    assert filenames(runtime) == {new.filename}


def test_a_call_whose_listing_fails_is_reported_and_retried_by_the_next_run(
        runtime: Runtime, fake: FakeStream) -> None:
    """One call failing does not stop the run: the others are recorded, the watermark moves, the call
    is kept with its error and listed first by the next run, which then forgets it."""
    cids = ended_calls(fake, 6, prefix="c", ago=timedelta(hours=2))
    broken = cids[2].replace(":", "/")
    fake.fail_next_api(f"/call/{broken}/recordings", 500, count=4)  # every attempt of the client
    start = now()
    first = reconcile(runtime, lambda ids: None, now=start)
    assert first.stream_error is None and first.discovery is not None
    assert first.discovery.counts.failed_calls == 1 and first.discovery.counts.calls_seen == 5
    assert list(first.failed_calls) == [cids[2]] and "500" in first.failed_calls[cids[2]]
    assert watermark_ms(runtime.ledger) == to_ms(start) and len(filenames(runtime)) == 5
    marks = read_marks(runtime.ledger.redis, runtime.ledger.prefix)
    assert (marks.failed_calls, marks.pending_calls) == ({"incremental": 1}, 1)

    before = len(fake.api_requests)
    second = reconcile(runtime, lambda ids: None)
    first_request = fake.api_requests[before]
    assert first_request.path == f"/api/v2/video/call/{broken}/recordings"  # retried first, before any query
    assert second.failed_calls == {} and second.discovery is not None and second.discovery.counts.new_files == 1
    assert len(filenames(runtime)) == 6 and FailedCalls(runtime.ledger, 0).errors() == {}
    assert read_marks(runtime.ledger.redis, runtime.ledger.prefix).failed_calls == {"incremental": 0}


def test_calls_failing_one_after_another_stop_the_run_and_keep_the_watermark(
        runtime: Runtime, fake: FakeStream) -> None:
    """Five calls failing in a row mean Stream is down, not one call: the run stops with the error."""
    ended_calls(fake, 8, prefix="c", ago=timedelta(hours=2))
    fake.fail_next_api("/recordings", 503, count=5 * 4)
    summary = reconcile(runtime, lambda ids: None)
    assert summary.stream_error is not None and "503" in summary.stream_error
    assert watermark_ms(runtime.ledger) is None and len(FailedCalls(runtime.ledger, 0).errors()) == 5
