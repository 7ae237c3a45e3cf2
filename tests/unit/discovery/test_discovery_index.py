"""Backfill and reconciliation feed the index of `archiver find` with each listed call's custom data
(QueryCalls' call objects): files they record, and files the ledger had already; in process, on the
real Redis and the fake Stream."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tests.fakestream.server import FakeStream
from worker.discovery.run import discover
from worker.intake.record import record_file
from worker.intake.webhook import ready_file
from worker.ledger.search import FindQuery, iter_matches
from worker.runtime import Runtime

NOW = datetime.now(UTC)


def archive_all(runtime: Runtime) -> None:
    """Every queued transfer recorded archived, as a worker records it."""
    ledger = runtime.ledger
    for tid in ledger.ids("queued"):
        assert ledger.finish(tid, ledger.claim(tid, "w", 60_000).token, "archived", bytes=2, sha256="ab" * 32)


def found(runtime: Runtime, *terms: str) -> list[str]:
    return sorted(m.transfer.filename for m in iter_matches(runtime.ledger, FindQuery(custom=terms)))


def test_discovery_indexes_the_custom_data_of_files_it_records_and_of_files_known_before(
        make_runtime: Callable[..., Runtime], fake: FakeStream) -> None:
    runtime = make_runtime(call_storage_key="")  # routes at intake: no GetCall, so no custom data then
    ended = NOW - timedelta(hours=2)
    fake.add_call("default", "acme", ended_at=ended, custom={"tenant": "acme", "seats": 12, "tags": ["x"]})
    delivered = fake.add_recording("default:acme", b"delivered", end_time=ended)
    listed = fake.add_recording("default:acme", b"listed only", end_time=ended)
    fake.add_call("default", "globex", ended_at=ended, custom={"tenant": "globex"})
    other = fake.add_recording("default:globex", b"other", end_time=ended)
    stream_file = ready_file(fake.event_for(delivered))
    assert stream_file is not None
    record_file(runtime.archive, runtime.ledger, stream_file)
    archive_all(runtime)
    assert found(runtime, "tenant=acme") == []  # the webhook alone knows no custom data

    summary = discover(runtime, since=NOW - timedelta(days=1))
    assert summary.counts.new_files == 2
    archive_all(runtime)
    assert found(runtime, "tenant=acme") == sorted([delivered.filename, listed.filename])
    assert found(runtime, "tenant=acme", "seats=12") == sorted([delivered.filename, listed.filename])
    assert found(runtime, "tenant=globex") == [other.filename]
    assert found(runtime, "tags=x") == []  # lists are not indexed


def test_a_changed_custom_value_replaces_the_old_one_at_the_next_listing(
        make_runtime: Callable[..., Runtime], fake: FakeStream) -> None:
    runtime = make_runtime()
    ended = NOW - timedelta(hours=2)
    fake.add_call("default", "moved", ended_at=ended, custom={"tenant": "acme"})
    recording = fake.add_recording("default:moved", b"r", end_time=ended)
    discover(runtime, since=NOW - timedelta(days=1))
    archive_all(runtime)
    assert found(runtime, "tenant=acme") == [recording.filename]
    fake.add_call("default", "moved", custom={"tenant": "initech"})
    discover(runtime, since=NOW - timedelta(days=1))
    assert found(runtime, "tenant=acme") == [] and found(runtime, "tenant=initech") == [recording.filename]
