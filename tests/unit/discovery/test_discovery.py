"""Backfill and reconciliation (worker/discovery/run.py): the real Redis, the fake Stream, in process."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.fakestream.server import FakeStream, StoredFile
from worker.discovery.reconcile import reconcile
from worker.discovery.run import DiscoveryEvent, discover
from worker.errors import StreamRefused, StreamUnavailable
from worker.files import StreamFile
from worker.intake.record import record_file, record_routes
from worker.intake.webhook import ready_file
from worker.runtime import Runtime

QUERY_CALLS = "/api/v2/video/calls"
NOW = datetime.now(UTC)
SINCE = NOW - timedelta(days=14)


@pytest.fixture
def make_runtime(make_runtime: Callable[..., Runtime]) -> Callable[..., Runtime]:
    """make_runtime(**top_level) → a Runtime with storages `disk` and `disk2` (default `disk`)."""
    return partial(make_runtime, "disk", "disk2")


def stream_file(fake: FakeStream, stored: StoredFile) -> StreamFile:
    found = ready_file(fake.event_for(stored))
    assert found is not None
    return found


def calls_with_files(fake: FakeStream, count: int, recordings: int, transcriptions: int = 0,
                     call_type: str = "default") -> list[StoredFile]:
    """`count` calls ended in the last days, each with its files (tiny ones)."""
    files = []
    for n in range(count):
        cid, ended = f"{call_type}:c{n:04d}", NOW - timedelta(minutes=n + 1)
        fake.add_call(call_type, f"c{n:04d}", ended_at=ended)
        files += [fake.add_recording(cid, b"r%d" % i, end_time=ended) for i in range(recordings)]
        files += [fake.add_transcription(cid, b"t%d" % i, end_time=ended) for i in range(transcriptions)]
    return files


def snapshot(runtime: Runtime) -> dict[str, Any]:
    """Every Redis key with its content (DUMP is not stable for an unchanged hash), but the Stream
    API's budget and counts (a dry run still asks Stream)."""
    r = runtime.ledger.redis
    read = {"hash": r.hgetall, "set": r.smembers, "string": r.get,
            "zset": lambda k: r.zrange(k, 0, -1, withscores=True)}
    api = ("archiver:stream_api:", "archiver:stats:stream_")
    return {k: read[r.type(k)](k) for k in r.keys("*") if not k.startswith(api)}


def query_bodies(fake: FakeStream) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in fake.api_requests if r.path == QUERY_CALLS]


def test_a_backfill_records_every_file_once_and_a_second_run_records_nothing(
        runtime: Runtime, fake: FakeStream) -> None:
    files = calls_with_files(fake, 200, recordings=8, transcriptions=2)
    first = discover(runtime, since=SINCE)
    c = first.counts
    assert (c.calls_seen, c.files_found, c.new_files, c.queued) == (200, 2000, 2000, 2000)
    assert len(first.to_queue) == len(set(first.to_queue)) == 2000
    assert set(first.to_queue) == set(runtime.ledger.ids("queued"))
    assert {t.filename for t in runtime.ledger.iter_transfers()} == {f.filename for f in files}
    assert all(len(b.get("filter_conditions", {})) and b["limit"] == 100 for b in query_bodies(fake))

    again = discover(runtime, since=SINCE)
    c = again.counts
    assert (c.files_found, c.new_files, c.queued, c.known_not_archived, again.to_queue) == (2000, 0, 0, 2000, [])
    assert len(runtime.ledger.ids()) == 2000


def test_call_type_call_and_kind_filters_select_what_is_recorded(runtime: Runtime, fake: FakeStream) -> None:
    calls_with_files(fake, 2, recordings=2, transcriptions=1)  # default:c0000, default:c0001
    (other,) = calls_with_files(fake, 1, recordings=1, call_type="other")

    by_type = discover(runtime, since=SINCE, call_types=["other"])
    assert (by_type.counts.calls_seen, by_type.counts.new_files) == (1, 1)
    assert [t.filename for t in runtime.ledger.iter_transfers()] == [other.filename]

    by_call = discover(runtime, since=SINCE, calls=["default:c0001"], kinds={"transcription"})
    assert (by_call.counts.calls_seen, by_call.counts.new_files) == (1, 1)
    assert {t.call_cid for t in runtime.ledger.iter_transfers()} == {"other:c0000", "default:c0001"}

    recordings_only = discover(runtime, since=SINCE, kinds={"recording"})
    assert (recordings_only.counts.files_found, recordings_only.counts.new_files) == (5, 4)
    assert {t.kind for t in runtime.ledger.iter_transfers()} == {"recording", "transcription"}
    assert len(runtime.ledger.ids()) == 6  # the transcription of default:c0000 was never asked for


def test_only_the_enabled_kinds_stream_lists_are_discovered(make_runtime: Callable[..., Runtime],
                                                            fake: FakeStream) -> None:
    """A kind not in `kinds` is not listed (reconciliation included); frames have no listing at all."""
    runtime = make_runtime(kinds=["recording", "frame_recording"])
    calls_with_files(fake, 1, recordings=1, transcriptions=1)
    fake.add_frame_recording("default:c0000", b"jpeg")
    found = discover(runtime, since=SINCE)
    assert (found.counts.files_found, found.counts.new_files) == (1, 1)
    assert {t.kind for t in runtime.ledger.iter_transfers()} == {"recording"}
    reconcile(runtime, lambda ids: None, full=True)
    listed = [r.path.rsplit("/", 1)[-1] for r in fake.api_requests if r.path != QUERY_CALLS]
    assert set(listed) == {"recordings"}
    assert len(runtime.ledger.ids()) == 1
    with pytest.raises(ValueError, match="kinds must be a non-empty subset of recording, transcription"):
        discover(runtime, since=SINCE, kinds={"frame_recording"})


def test_a_dry_run_records_nothing_and_reports_what_it_would(runtime: Runtime, fake: FakeStream) -> None:
    files = calls_with_files(fake, 2, recordings=2, transcriptions=1)
    discover(runtime, since=SINCE, calls=["default:c0000"])
    before = snapshot(runtime)
    events: list[DiscoveryEvent] = []

    dry = discover(runtime, since=SINCE, dry_run=True, checkpoint="dry", progress=events.append)
    c = dry.counts
    assert (c.calls_seen, c.files_found, c.known_not_archived, c.new_files, c.queued) == (2, 6, 3, 3, 3)
    assert dry.dry_run and dry.to_queue == []
    would = [(e.file.filename, e.storages) for e in events if e.what == "file" and e.outcome == "new" and e.file]
    assert sorted(would) == sorted((f.filename, ("disk",)) for f in files if f.call_cid == "default:c0001")
    assert snapshot(runtime) == before


def test_calls_still_running_are_found_and_calls_ended_before_since_are_not(
        runtime: Runtime, fake: FakeStream) -> None:
    fake.add_call("default", "live")  # running: no ended_at
    live = fake.add_recording("default:live", b"part 1", end_time=NOW - timedelta(hours=2))
    fake.add_call("default", "marathon", created_at=NOW - timedelta(days=30))  # running, untouched for 30 days
    marathon = fake.add_recording("default:marathon", b"day 29", end_time=NOW - timedelta(days=1))
    fake.add_recording("default:old", b"gone soon", end_time=NOW - timedelta(days=20))  # ended before since
    ended = fake.add_recording("default:recent", b"yesterday", end_time=NOW - timedelta(days=1))

    summary = discover(runtime, since=SINCE)
    assert summary.counts.calls_seen == 3  # `live` matches two passes and is listed once
    assert {t.filename for t in runtime.ledger.iter_transfers()} == {live.filename, marathon.filename, ended.filename}
    assert [p for b in query_bodies(fake) for p in b["filter_conditions"] if p != "updated_at"] == [
        "ended_at", "ended_at", "ended_at", "ongoing"]


def test_an_interrupted_backfill_resumes_where_its_checkpoint_says(runtime: Runtime, fake: FakeStream) -> None:
    calls_with_files(fake, 250, recordings=1, transcriptions=1)

    def fail_after_two_pages(event: DiscoveryEvent) -> None:
        if event.what == "page" and event.counts.pages == 2:
            fake.fail_next_api(QUERY_CALLS, 503, count=4)  # every attempt of the client

    with pytest.raises(StreamUnavailable, match="503"):
        discover(runtime, since=SINCE, checkpoint="nightly", progress=fail_after_two_pages)
    saved = json.loads(runtime.ledger.redis.get("archiver:backfill:nightly") or "{}")
    assert (saved["pass"], saved["counts"]["calls_seen"]) == (0, 200) and saved["cursor"]
    assert len(runtime.ledger.ids()) == 400
    fetched_before = len(fake.api_requests)

    resumed = discover(runtime, since=SINCE, checkpoint="nightly")
    c = resumed.counts
    assert resumed.resumed and (c.calls_seen, c.files_found, c.new_files, c.pages) == (250, 500, 500, 6)
    assert sorted(resumed.to_queue) == sorted(runtime.ledger.ids()) and len(resumed.to_queue) == 500
    later = fake.api_requests[fetched_before:]
    assert json.loads(next(r.body for r in later if r.path == QUERY_CALLS)).get("next") == saved["cursor"]
    listings = [r.path for r in fake.api_requests if r.path.endswith("/recordings")]
    assert len(listings) == len(set(listings)) == 250  # no call of the first pages was listed again
    assert runtime.ledger.redis.keys("archiver:backfill:*") == []


def test_a_checkpoint_of_another_query_is_replaced(runtime: Runtime, fake: FakeStream) -> None:
    calls_with_files(fake, 120, recordings=1)

    def fail_after_one_page(event: DiscoveryEvent) -> None:
        if event.what == "page" and event.counts.pages == 1:
            fake.fail_next_api(QUERY_CALLS, 400, count=1)  # refused: not retried

    with pytest.raises(StreamRefused, match="400"):
        discover(runtime, since=SINCE, checkpoint="adhoc", progress=fail_after_one_page)
    other = discover(runtime, since=SINCE, kinds={"recording"}, checkpoint="adhoc")
    assert not other.resumed and other.counts.calls_seen == 120 and other.counts.known_not_archived == 100


def test_transfers_are_handed_over_soonest_to_expire_first(runtime: Runtime, fake: FakeStream) -> None:
    fake.add_call("default", "a", ended_at=NOW - timedelta(days=10))
    a = fake.add_recording("default:a", b"a", end_time=NOW - timedelta(days=10))
    fake.add_call("default", "b", ended_at=NOW - timedelta(days=3))
    b1 = fake.add_recording("default:b", b"b1", end_time=NOW - timedelta(days=3))
    b2 = fake.add_transcription("default:b", b"b2", end_time=NOW - timedelta(days=5))
    fake.add_call("default", "c")  # still running, discovered last, holding the oldest file
    c = fake.add_recording("default:c", b"c", end_time=NOW - timedelta(days=11))
    handed: list[list[str]] = []
    events: list[DiscoveryEvent] = []

    summary = reconcile(runtime, lambda ids: handed.append(list(ids)))
    assert summary.discovery is not None
    order = {t.id: t.filename for t in runtime.ledger.iter_transfers()}
    assert [[order[t] for t in batch] for batch in handed] == [[c.filename, a.filename, b2.filename, b1.filename]]
    discover(runtime, since=SINCE, dry_run=True, progress=events.append)
    discovered = [e.file.filename for e in events if e.what == "file" and e.file]
    assert discovered == [a.filename, b1.filename, b2.filename, c.filename]  # not the order handed over


def test_reconcile_records_a_lost_webhook_leaves_failed_alone_and_flags_files_at_risk(
        make_runtime: Callable[..., Runtime], fake: FakeStream) -> None:
    runtime = make_runtime(default_storage=["disk", "disk2"])
    lost = fake.add_recording("default:lost", b"webhook never came", end_time=NOW - timedelta(hours=1))
    late = fake.add_recording("default:late", b"13 days old", end_time=NOW - timedelta(days=13))
    failed = fake.add_recording("default:failed", b"refused", end_time=NOW - timedelta(days=13))
    safe = fake.add_recording("default:safe", b"archived", end_time=NOW - timedelta(days=13))
    for stored, state in ((failed, "failed"), (safe, "archived")):
        for tid in record_routes(runtime.archive, runtime.ledger, stream_file(fake, stored)).to_queue:
            claim = runtime.ledger.claim(tid, "test", 60_000)
            runtime.ledger.finish(tid, claim.token, state, bytes=stored.size, error="bucket missing"
                                  if state == "failed" else None)
    unrouted = StreamFile(call_cid="default:unknown-to-stream", kind="recording", filename="rec_x.mp4",
                          url="http://x/y", start_time=NOW - timedelta(days=14), end_time=NOW - timedelta(days=13.5))
    record_file(runtime.archive, runtime.ledger, unrouted)  # waits for routes; its call is not in Stream
    handed: list[str] = []
    started_ms = int(datetime.now(UTC).timestamp() * 1000)

    with capture_logs() as logs:
        summary = reconcile(runtime, handed.extend)
    by_name = {t.id: (t.filename, t.state) for t in runtime.ledger.iter_transfers()}
    assert sorted(by_name[t][0] for t in handed) == sorted([lost.filename, late.filename] * 2)
    assert sorted(v for v in by_name.values() if v[0] == failed.filename) == [(failed.filename, "failed")] * 2
    assert summary.discovery is not None and summary.discovery.counts.already_archived == 1
    flagged = [e for e in logs if e["event"] == "recording_at_risk"]
    assert sorted((e["call_cid"], e["storage"], e["log_level"]) for e in flagged) == [
        ("default:late", "disk,disk2", "error"), ("default:unknown-to-stream", "(routing pending)", "error")]
    assert all(e["expires_at"].endswith("Z") and 0 < e["time_left_s"] < 86_400 for e in flagged)
    assert [f.call_cid for f in summary.at_risk] == ["default:unknown-to-stream", "default:late"]  # soonest first
    assert runtime.ledger.redis.get("archiver:at_risk") == "2"
    assert started_ms <= int(runtime.ledger.redis.get("archiver:at_risk_at") or 0) <= started_ms + 60_000


def test_a_429_from_query_calls_is_waited_out(runtime: Runtime, fake: FakeStream) -> None:
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # a real sleep: the shared budget's clock is Redis'
        waits.append(seconds)
        time.sleep(seconds)

    runtime.stream._sleep = sleep
    stored = fake.add_recording("default:busy", b"x")
    fake.fail_next_api(QUERY_CALLS, 429, count=1, headers={"Retry-After": "1"})
    summary = discover(runtime, since=SINCE)
    assert summary.counts.new_files == 1 and [t.filename for t in runtime.ledger.iter_transfers()] == [stored.filename]
    assert waits[0] == 1.0 and sum(waits) < 1.5
