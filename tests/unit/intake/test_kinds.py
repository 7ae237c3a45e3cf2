"""The kinds of file the `kinds` setting enables: a frame recording's event read into a file, and the
events of a kind not enabled answered 200, counted as ``ignored`` and recorded nowhere."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.fakestream.server import FakeStream
from tests.support.processes import wait_until
from tests.unit.conftest import Receiver, ledger_keys
from worker.errors import MalformedPayload
from worker.intake.webhook import ready_file
from worker.monitoring.stats import Stats

CAPTURED = datetime(2026, 3, 1, 12, 0, 5, 250000, tzinfo=UTC)


@pytest.mark.parametrize("ns", [False, True], ids=["rfc3339", "nanoseconds"])
def test_a_frame_event_is_a_file_named_by_its_url_at_the_moment_it_was_captured(fake: FakeStream, ns: bool) -> None:
    frame = fake.add_frame_recording("default:frames", b"jpeg", captured_at=CAPTURED, participant="alice")
    event = fake.event_for(frame, ns_timestamps=ns)
    file = ready_file(event)
    assert file is not None
    assert (file.kind, file.call_cid, file.filename, file.url) == ("frame_recording", "default:frames",
                                                                   frame.filename, event["url"])
    assert "?" in event["url"] and event["url"].split("?")[0].endswith("/" + file.filename)
    assert file.start_time == file.end_time == CAPTURED
    assert (file.session_id, file.egress_id, file.recording_type) == (frame.session_id, frame.egress_id, None)
    assert file.url_at is not None and file.url_at > CAPTURED
    assert file.expires_at(timedelta(days=14)) == CAPTURED + timedelta(days=14)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"url": "https://cdn.example.com/frames/"}, "url: 'https://cdn.example.com/frames/' names no file"),
        ({"url": None}, "url: missing"),
        ({"captured_at": None}, "captured_at"),
        ({"captured_at": "yesterday"}, "captured_at: 'yesterday' is not an RFC 3339 timestamp"),
        ({"call_cid": "no-colon"}, "call_cid"),
    ],
)
def test_a_flawed_frame_event_is_malformed(fake: FakeStream, change: dict[str, Any], reason: str) -> None:
    event = fake.event_for(fake.add_frame_recording("default:flawed", b"jpeg"))
    event.update(change)
    with pytest.raises(MalformedPayload, match=reason.replace("?", r"\?")):
        ready_file({k: v for k, v in event.items() if v is not None})


def _counted(receiver: Receiver, outcome: str, count: int) -> None:
    stats = Stats(receiver.ledger.redis)
    wait_until(lambda: stats.webhooks().get(outcome) == count, timeout=5, message=f"{count} webhook(s) {outcome}")


def test_frame_events_are_ignored_and_counted_unless_enabled(fake: FakeStream, receiver: Receiver) -> None:
    event = fake.event_for(fake.add_frame_recording("default:off", b"jpeg"))
    response = receiver.post(json.dumps(event).encode())
    assert (response.status_code, response.json()) == (200, {"status": "ignored", "type": "call.frame_recording_ready"})
    _counted(receiver, "ignored", 1)
    assert ledger_keys(receiver.ledger) == [] and receiver.queued == []
    assert Stats(receiver.ledger.redis).files_received() == {}


def test_recordings_and_transcriptions_not_enabled_are_ignored_with_their_failures(
        fake: FakeStream, make_receiver: Callable[..., Receiver]) -> None:
    receiver = make_receiver(kinds=["frame_recording"])
    recording = fake.add_recording("default:only-frames", b"mp4")
    events = [fake.event_for(recording), fake.event_for(fake.add_transcription("default:only-frames", b"{}\n")),
              {"type": "call.recording_failed", "call_cid": "default:only-frames", "egress_id": "eg-1"},
              {"type": "call.transcription_failed", "call_cid": "default:only-frames", "egress_id": "eg-2"}]
    for event in events:
        response = receiver.post(json.dumps(event).encode())
        assert (response.status_code, response.json()["status"]) == (200, "ignored")
    _counted(receiver, "ignored", len(events))
    assert ledger_keys(receiver.ledger) == [] and receiver.ledger.stream_failures() == []


def test_an_enabled_frame_event_is_recorded_once_and_counted_by_kind(fake: FakeStream,
                                                                     make_receiver: Callable[..., Receiver]) -> None:
    receiver = make_receiver(kinds=["recording", "frame_recording"])
    frame = fake.add_frame_recording("default:on", b"jpeg", captured_at=datetime.now(UTC))
    body = json.dumps(fake.event_for(frame)).encode()
    first = receiver.post(body)
    assert first.status_code == 202 and first.json()["status"] == "accepted"
    (tid,) = first.json()["transfers"]
    transfer = receiver.ledger.get(tid)
    assert transfer is not None and transfer.kind == "frame_recording" and transfer.state == "queued"
    assert transfer.key == f"default/on/{frame.filename}"
    assert receiver.post(body).json()["status"] == "known"  # a redelivery: recorded once, counted once
    recording = receiver.post(json.dumps(fake.event_for(fake.add_recording("default:on", b"mp4"))).encode())
    assert recording.status_code == 202
    stats = Stats(receiver.ledger.redis)
    wait_until(lambda: stats.files_received() == {"frame_recording": 1, "recording": 1}, timeout=5,
               message="the new files to be counted by kind")


@pytest.mark.parametrize("ns", [False, True], ids=["rfc3339", "nanoseconds"])
def test_a_stats_report_event_is_a_file_with_no_url_named_after_its_session(fake: FakeStream, ns: bool) -> None:
    report = fake.add_stats_report("default:reported", session_id="sess-1")
    event = fake.stats_report_event(report, ns_timestamps=ns)
    file = ready_file(event)
    assert file is not None
    assert (file.kind, file.call_cid, file.filename, file.url, file.session_id) == (
        "stats_report", "default:reported", "stats_report_sess-1.json", "", "sess-1")
    assert file.start_time == file.end_time and file.url_at == file.start_time  # the event's created_at


@pytest.mark.parametrize(("change", "reason"), [({"session_id": None}, "session_id: missing"),
                                                ({"session_id": ""}, "session_id: missing"),
                                                ({"created_at": "soon"}, "created_at: 'soon'")])
def test_a_flawed_stats_report_event_is_malformed(fake: FakeStream, change: dict[str, Any], reason: str) -> None:
    event = fake.stats_report_event(fake.add_stats_report("default:flawed"))
    event.update(change)
    with pytest.raises(MalformedPayload, match=reason):
        ready_file({k: v for k, v in event.items() if v is not None})


def test_stats_report_events_are_ignored_unless_enabled_then_recorded(
        fake: FakeStream, make_receiver: Callable[..., Receiver]) -> None:
    body = json.dumps(fake.stats_report_event(fake.add_stats_report("default:rep", session_id="s1"))).encode()
    off = make_receiver()
    assert off.post(body).json() == {"status": "ignored", "type": "call.stats_report_ready"}
    assert ledger_keys(off.ledger) == []
    on = make_receiver(kinds=["recording", "stats_report"])
    answer = on.post(body)
    assert answer.status_code == 202
    (tid,) = answer.json()["transfers"]
    transfer = on.ledger.get(tid)
    assert transfer is not None and (transfer.kind, transfer.state) == ("stats_report", "queued")
    assert transfer.key == "default/rep/stats_report_s1.json"
