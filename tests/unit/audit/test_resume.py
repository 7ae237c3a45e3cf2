"""An audit stopped half-way resumes from its checkpoint; Stream failing stops it, never turns into verdicts;
storage reads are paced (worker/audit/checkpoint.py, run.py, pacing.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.fakestream.server import FakeStream
from tests.unit.audit.conftest import Clock, archive, run, seed, verdicts
from worker.audit.checkpoint import drop, load
from worker.audit.model import AuditCounts, AuditQuery
from worker.audit.pacing import Pacer
from worker.audit.run import EventKind, audit
from worker.errors import StreamRefused
from worker.runtime import Runtime


class Stop(Exception):
    """Raised from the progress callback: the process dies there."""


def test_an_interrupted_audit_resumes_and_checks_each_object_once(runtime: Runtime, fake: FakeStream) -> None:
    files = seed(fake, calls=6, files=2)
    for f in files:
        archive(runtime, fake, f)
    clock = Clock()
    pacer = Pacer(runtime.archive.audit_rate, clock=clock, sleep=clock.sleep)
    query = AuditQuery.build(datetime.now(UTC) - timedelta(days=14))
    calls_done = []

    def die_after_two_calls(what: EventKind, counts: AuditCounts) -> None:
        calls_done.append(what)
        if calls_done.count("call") == 2:
            raise Stop

    with pytest.raises(Stop):
        audit(runtime, query, lambda ids: None, name="nightly", pacer=pacer, progress=die_after_two_calls)
    saved = load(runtime.ledger, "nightly")
    assert saved is not None and saved["phase"] == "stream" and saved["counts"]["files"] == 4

    events: list[EventKind] = []
    result = audit(runtime, query, lambda ids: None, name="nightly", pacer=pacer,
                   progress=lambda what, _: events.append(what))
    assert events[0] == "resumed" and events.count("call") == 4
    assert result.summary.resumed and verdicts(result) == {(f.filename, s): "ok" for f in files for s in ("a", "b")}
    assert result.summary.counts.objects == pacer.count == 24  # 8 before the stop, 16 after: none twice
    result.forget()
    assert load(runtime.ledger, "nightly") is None
    fresh = run(runtime, name="nightly")
    assert not fresh.summary.resumed and fresh.summary.counts.objects == 24  # the next run checks everything


def test_a_dropped_audit_starts_over(runtime: Runtime, fake: FakeStream) -> None:
    (one,) = seed(fake, calls=1, files=1)
    archive(runtime, fake, one)
    query = AuditQuery.build(datetime.now(UTC) - timedelta(days=14))
    run(runtime, name="again", query=query)
    assert drop(runtime.ledger, "again") and not drop(runtime.ledger, "again")
    assert not run(runtime, name="again", query=query).summary.resumed


def test_another_query_under_the_same_name_starts_over(runtime: Runtime, fake: FakeStream) -> None:
    (one,) = seed(fake, calls=1, files=1)
    archive(runtime, fake, one)
    query = AuditQuery.build(datetime.now(UTC) - timedelta(days=14))
    first = run(runtime, name="same", query=query)  # completed, its report not written (never forgotten)
    assert not first.summary.resumed
    again = run(runtime, name="same", query=query)  # the same query: its finished result, as it was
    assert again.summary.resumed and again.summary.finished_at == first.summary.finished_at
    assert again.summary.counts.objects == 2
    other = run(runtime, name="same", deep=True)
    assert not other.summary.resumed and [r.detail for r in other.rows()] == ["sha256 verified"] * 2


def test_stream_failing_stops_the_audit_and_the_same_audit_resumes_where_it_stopped(
        runtime: Runtime, fake: FakeStream) -> None:
    files = seed(fake, calls=4, files=1)
    for f in files:
        archive(runtime, fake, f)
    fake.fail_next_api("/call/default/c2/recordings", 401)  # calls are listed oldest first: c3, c2, c1, c0
    query = AuditQuery.build(datetime.now(UTC) - timedelta(days=14))
    with pytest.raises(StreamRefused, match="401"):
        run(runtime, name="flaky", query=query)
    saved = load(runtime.ledger, "flaky")
    assert saved is not None and saved["counts"]["calls_listed"] == 1  # c3: kept
    requests = len(fake.api_requests)
    result = run(runtime, name="flaky", query=query)
    assert result.summary.resumed and result.summary.counts.calls_listed == 4
    assert verdicts(result) == {(f.filename, s): "ok" for f in files for s in ("a", "b")}
    listed = [r.path.split("/")[-2] for r in fake.api_requests[requests:] if r.path.endswith("/recordings")]
    assert listed == ["c2", "c1", "c0"]


def test_query_calls_failing_leaves_no_verdict(runtime: Runtime, fake: FakeStream) -> None:
    seed(fake, calls=1, files=1)
    fake.fail_next_api("/api/v2/video/calls", 403)
    with pytest.raises(StreamRefused, match="403"):
        run(runtime, name="refused")
    saved = load(runtime.ledger, "refused")
    assert saved is None or saved["counts"]["verdicts"] == dict.fromkeys(saved["counts"]["verdicts"], 0)


def test_storage_reads_are_paced_at_audit_rate(make_runtime: object, fake: FakeStream) -> None:
    runtime = make_runtime("a", "b", default_storage=["a", "b"], call_storage_key="", audit_rate=4)  # type: ignore[operator]
    files = seed(fake, calls=5, files=2)
    for f in files:
        archive(runtime, fake, f)
    clock = Clock()
    result = run(runtime, clock=clock, deep=True)
    assert result.summary.counts.objects == 20
    assert len(clock.slept) == 19 and clock.now == pytest.approx(19 / 4)  # 20 objects at 4 a second: 4.75 s


def test_a_pace_lets_the_first_go_at_once_and_spaces_the_rest() -> None:
    clock = Clock()
    pacer = Pacer(10, clock=clock, sleep=clock.sleep)
    pacer.wait()
    assert clock.slept == []
    clock.now += 0.25  # slower than the pace: no wait
    pacer.wait()
    pacer.wait()
    assert clock.slept == [pytest.approx(0.1)] and pacer.count == 3
    with pytest.raises(ValueError, match="positive rate"):
        Pacer(0)
