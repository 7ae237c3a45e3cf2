"""Session complete (worker/sessions/complete.py): settled by a reconciliation's listing `settle_after` past the
session's end, complete when every file of it is archived; then the final manifest and one session.archived.
Real Redis, local disk, the fake Stream's API and CDN."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.fakestream.models import StoredFile
from tests.fakestream.server import FakeStream
from worker.discovery.reconcile import reconcile
from worker.intake.record import record_routes
from worker.intake.webhook import ready_file
from worker.notify.formats import body, slack_text
from worker.notify.outbox import Event, Outbox, event_id
from worker.runtime import Runtime
from worker.sessions.complete import session_named
from worker.transfer.run import run_transfer

CID = "default:done"
NOTIFY = [{"url": "https://app.example/hooks", "secret": "s3cret", "events": ["session.archived"]}]


def archive(runtime: Runtime, fake: FakeStream, file: StoredFile) -> None:
    stream_file = ready_file(fake.event_for(file))
    assert stream_file is not None
    for tid in record_routes(runtime.archive, runtime.ledger, stream_file).transfer_ids:
        assert run_transfer(runtime, tid) == "archived"


def a_session(fake: FakeStream, ended: datetime) -> list[StoredFile]:
    fake.add_call("default", "done", ended_at=ended)
    end = ended - timedelta(minutes=1)
    return [fake.add_recording(CID, b"r" * 100, filename=f"rec_default_done_{n}.mp4", end_time=end)
            for n in (1, 2)]


def announced(runtime: Runtime, name: str) -> dict[str, Any] | None:
    event = Outbox(runtime.ledger).event(event_id("session.archived", name))
    return event.data if event else None


def test_a_settled_and_archived_session_is_announced_once_with_its_final_manifest(
        make_runtime: Callable[..., Runtime], fake: FakeStream, tmp_path: Path) -> None:
    runtime = make_runtime(notify=NOTIFY, call_storage_key="")
    files = a_session(fake, datetime.now(UTC) - timedelta(hours=2))
    for file in files:
        archive(runtime, fake, file)
    queued: list[str] = []
    reconcile(runtime, queued.extend)
    name = f"{CID}:{files[0].session_id}"
    data = announced(runtime, name)
    assert data is not None and data["call_cid"] == CID and data["session_id"] == files[0].session_id
    assert data["manifest_key"] == f"default/done/manifest_{files[0].session_id}.json"
    assert sorted(str(f["filename"]) for f in data["files"]) == [f.filename for f in files]
    assert queued == Outbox(runtime.ledger).deliveries_of(event_id("session.archived", name))
    manifest = json.loads((tmp_path / "disk" / str(data["manifest_key"])).read_bytes())
    assert manifest["complete"] is True and len(manifest["files"]) == 2
    again: list[str] = []
    reconcile(runtime, again.extend)
    assert again == []


def test_a_session_not_settled_yet_is_not_announced(make_runtime: Callable[..., Runtime], fake: FakeStream) -> None:
    runtime = make_runtime(notify=NOTIFY, call_storage_key="")
    files = a_session(fake, datetime.now(UTC) - timedelta(minutes=5))  # settle_after: 30 minutes
    for file in files:
        archive(runtime, fake, file)
    reconcile(runtime, lambda ids: None)
    assert announced(runtime, f"{CID}:{files[0].session_id}") is None


def test_a_file_the_listing_finds_delays_the_announcement_until_it_is_archived(
        make_runtime: Callable[..., Runtime], fake: FakeStream) -> None:
    runtime = make_runtime(notify=NOTIFY, call_storage_key="")
    ended = datetime.now(UTC) - timedelta(minutes=40)  # settled, and still within the next run's overlap
    files = a_session(fake, ended)
    for file in files:
        archive(runtime, fake, file)
    late = fake.add_transcription(CID, b'{"t": 1}\n', filename="transcript_default_done_1.jsonl",
                                  end_time=ended - timedelta(minutes=1))
    name = f"{CID}:{files[0].session_id}"
    queued: list[str] = []
    reconcile(runtime, queued.extend)  # the listing shows the transcription: recorded, not archived
    assert announced(runtime, name) is None
    for tid in queued:
        assert run_transfer(runtime, tid) == "archived"
    reconcile(runtime, lambda ids: None)
    data = announced(runtime, name)
    assert data is not None
    assert late.filename in {f["filename"] for f in data["files"]}


def test_a_failed_transfer_keeps_the_session_incomplete(make_runtime: Callable[..., Runtime],
                                                        fake: FakeStream) -> None:
    runtime = make_runtime(notify=NOTIFY, call_storage_key="")
    files = a_session(fake, datetime.now(UTC) - timedelta(hours=2))
    archive(runtime, fake, files[0])
    stream_file = ready_file(fake.event_for(files[1]))
    assert stream_file is not None
    record_routes(runtime.archive, runtime.ledger, stream_file)  # queued, never archived
    reconcile(runtime, lambda ids: None)
    name = f"{CID}:{files[0].session_id}"
    assert announced(runtime, name) is None
    assert runtime.ledger.redis.zscore(runtime.ledger.keys.sessions_settled, name) is not None


def test_a_session_is_named_by_its_call_and_id() -> None:
    session = session_named("default:a:b-c")
    assert (session.call_cid, session.session_id) == ("default:a", "b-c")


def test_session_archived_in_json_is_the_data_announced_and_in_slack_a_line() -> None:
    data = {"call_cid": CID, "session_id": "s1", "manifest_key": "default/done/manifest_s1.json",
            "files": [{"filename": "a.mp4"}, {"filename": "b.jsonl"}]}
    event = Event("ev_1", "session.archived", f"{CID}:s1", datetime(2026, 1, 1, tzinfo=UTC), data)
    assert json.loads(body(event, "json"))["data"] == data
    assert slack_text(event) == ("session s1 of call default:done archived: 2 file(s), manifest "
                                 "default/done/manifest_s1.json")
