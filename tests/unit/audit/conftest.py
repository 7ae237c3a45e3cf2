"""Audit fixtures: a Runtime with two local storages on the fake Stream, files archived for real."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.fakestream.models import StoredFile
from tests.fakestream.server import FakeStream
from worker.audit.model import AuditQuery
from worker.audit.pacing import Pacer
from worker.audit.run import AuditResult, audit
from worker.files import StreamFile
from worker.intake.record import record_routes
from worker.intake.webhook import ready_file
from worker.runtime import Runtime
from worker.transfer.run import run_transfer

NOW = datetime.now(UTC)


class Clock:
    """A monotonic clock that only moves when something sleeps on it: a pace is counted, not waited."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime]) -> Runtime:
    """Storages `a` and `b` (local disks), every file to both; routes known at intake."""
    return make_runtime("a", "b", default_storage=["a", "b"], call_storage_key="")


@pytest.fixture
def root(tmp_path: Path) -> Callable[[str], Path]:
    """root("a") → where the local storage `a` keeps its objects."""
    return lambda name: tmp_path / name


def stream_file(fake: FakeStream, stored: StoredFile) -> StreamFile:
    found = ready_file(fake.event_for(stored))
    assert found is not None
    return found


def archive(runtime: Runtime, fake: FakeStream, stored: StoredFile) -> list[str]:
    """Record the file as its webhook would, and run its transfers to the end; its transfer ids."""
    recorded = record_routes(runtime.archive, runtime.ledger, stream_file(fake, stored))
    for tid in recorded.to_queue:
        run_transfer(runtime, tid)
    return recorded.transfer_ids


def seed(fake: FakeStream, calls: int = 3, files: int = 2, *, ended: datetime | None = None) -> list[StoredFile]:
    """`calls` calls ended an hour ago (or at `ended`), each with `files` small recordings."""
    stored = []
    for n in range(calls):
        end = ended or NOW - timedelta(hours=1, minutes=n)
        fake.add_call("default", f"c{n}", ended_at=end)
        stored += [fake.add_recording(f"default:c{n}", b"%d-%d-" % (n, i) * 50, end_time=end) for i in range(files)]
    return stored


def run(runtime: Runtime, *, since: timedelta = timedelta(days=14), deep: bool = False, calls: tuple[str, ...] = (),
        name: str = "test", queued: list[str] | None = None, clock: Clock | None = None,
        query: AuditQuery | None = None) -> AuditResult:
    """One audit to completion (its pace counted on `clock`, never waited), its ids queued into `queued`;
    of `query`, or of the last `since` (`calls`, `deep`)."""
    clock = clock or Clock()
    pacer = Pacer(runtime.archive.audit_rate, clock=clock, sleep=clock.sleep)
    query = query or AuditQuery.build(datetime.now(UTC) - since, calls=calls, deep=deep)
    return audit(runtime, query, (queued if queued is not None else []).extend, name=name, pacer=pacer)


def verdicts(result: AuditResult) -> dict[tuple[str, str | None], str]:
    """(filename, storage) → verdict, for every row."""
    found: dict[tuple[str, str | None], str] = {}
    for row in result.rows():
        assert (row.filename, row.storage) not in found, f"{row} judged twice"
        found[(row.filename, row.storage)] = row.verdict
    return found
