"""SQS intake (worker/intake/sqs.py) against moto_server's real SQS and a real Redis."""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.fakestream.server import FakeStream
from tests.support.moto import REGION
from tests.support.processes import wait_until
from worker.errors import MalformedPayload
from worker.intake.sqs import PollResult, decode_message, poll_once, run_sqs_intake, sqs_client
from worker.intake.webhook import MAX_BODY, ready_file
from worker.ledger.connection import connect
from worker.ledger.store import Ledger
from worker.monitoring.stats import Stats

EVENT = {"type": "call.session_started", "call_cid": "default:x", "created_at": "2026-01-01T00:00:00Z"}


def raw(event: dict[str, Any]) -> str:
    return json.dumps(event)


def b64_gzip(event: dict[str, Any]) -> str:
    return base64.b64encode(gzip.compress(raw(event).encode())).decode()


def b64_plain(event: dict[str, Any]) -> str:
    return base64.b64encode(raw(event).encode()).decode()


def sns(message: str, type_: str = "Notification") -> str:
    return json.dumps({"Type": type_, "MessageId": str(uuid.uuid4()), "Message": message,
                       "TopicArn": "arn:aws:sns:us-east-1:123456789012:stream-events",
                       "Timestamp": "2026-01-01T00:00:00.000Z", "SignatureVersion": "1"})


ENCODINGS: dict[str, Callable[[dict[str, Any]], str]] = {
    "raw": raw, "base64_gzip": b64_gzip, "base64_plain": b64_plain,
    "sns_raw": lambda e: sns(raw(e)), "sns_base64_gzip": lambda e: sns(b64_gzip(e)),
    "sns_base64_plain": lambda e: sns(b64_plain(e)),
    "base64_gzip_of_sns": lambda e: base64.b64encode(gzip.compress(sns(raw(e)).encode())).decode(),
}


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_every_stream_encoding_decodes_to_the_event(encoding: str) -> None:
    assert decode_message(ENCODINGS[encoding](EVENT)) == EVENT


GARBAGE = {
    "not JSON, not base64": "hello {world}",
    "empty": "",
    "base64 of text": base64.b64encode(b"hello world").decode(),
    "truncated gzip": base64.b64encode(gzip.compress(raw(EVENT).encode())[:-9]).decode(),
    "gzip magic, then not gzip": base64.b64encode(b"\x1f\x8b" + raw(EVENT).encode()).decode(),
    "JSON array": "[1, 2]",
    "no type": json.dumps({"call_cid": "default:x"}),
    "SNS without Message": json.dumps({"Type": "Notification", "TopicArn": "arn:aws:sns:x"}),
    "SNS subscription confirmation": sns("You have chosen to subscribe", "SubscriptionConfirmation"),
    "SNS Message not an event": sns("just words"),
    "gzip bomb": base64.b64encode(gzip.compress(b" " * (MAX_BODY + 1))).decode(),
    "raw JSON over the limit": json.dumps({**EVENT, "pad": "x" * MAX_BODY}),
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_anything_else_is_malformed_with_a_reason(name: str) -> None:
    with pytest.raises(MalformedPayload) as caught:
        decode_message(GARBAGE[name])
    assert str(caught.value)


@pytest.fixture
def sqs(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An SQS client on moto built by `sqs_client`, credentials from the environment (the default chain)."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing"}.items():
        monkeypatch.setenv(name, value)
    client = sqs_client(REGION, moto_server)
    yield client
    client.close()


@pytest.fixture
def queue(sqs: Any) -> str:
    """A fresh queue whose received messages come back after one second."""
    name = f"stream-events-{uuid.uuid4().hex[:12]}"
    return str(sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "1"})["QueueUrl"])


def on_queue(sqs: Any, queue: str) -> tuple[int, int]:
    """(visible, in flight) messages: both 0 once everything is deleted."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=names)["Attributes"]
    return int(attrs[names[0]]), int(attrs[names[1]])


class Queued(list[str]):
    def __call__(self, ids: Sequence[str]) -> None:
        self.extend(ids)


def poll(settings: Any, ledger: Ledger, sqs: Any, queue: str, enqueue: Callable[[Sequence[str]], None] | None = None,
         wait: int = 0) -> PollResult:
    return poll_once(settings, ledger, Queued() if enqueue is None else enqueue, sqs, queue, wait_seconds=wait)


def test_a_recording_ready_message_is_recorded_deleted_and_its_transfers_queued(
    sqs: Any, queue: str, ledger: Ledger, make_settings: Any, fake: FakeStream
) -> None:
    event = fake.event_for(fake.add_recording("default:sqs-1", b"x" * 100))
    sqs.send_message(QueueUrl=queue, MessageBody=b64_gzip(event))
    queued = Queued()
    result = poll(make_settings(call_storage_key=""), ledger, sqs, queue, queued, wait=1)
    assert result == PollResult(received=1, recorded=1)
    file = ready_file(event)
    assert file is not None
    assert queued == ledger.transfers_of(file.file_id) == ledger.ids("queued") and len(queued) == 1
    assert on_queue(sqs, queue) == (0, 0)


def test_float_and_numeric_string_nanosecond_timestamps_are_recorded(
    sqs: Any, queue: str, ledger: Ledger, make_settings: Any, fake: FakeStream
) -> None:
    """The SDK's timestamp forms reach the ledger from SQS too: float ns and a string of ns digits."""
    event = fake.event_for(fake.add_recording("default:sqs-ns", b"x" * 100))
    ended = int(time.time()) - 60  # whole seconds: exact as a float of nanoseconds
    event["call_recording"] |= {"start_time": float((ended - 75) * 10**9), "end_time": str(ended * 10**9)}
    sqs.send_message(QueueUrl=queue, MessageBody=b64_gzip(event))
    assert poll(make_settings(call_storage_key=""), ledger, sqs, queue, wait=1) == PollResult(received=1, recorded=1)
    file = ready_file(event)
    assert file is not None
    record = ledger.file(file.file_id)
    assert (int(record["start_time"]), int(record["end_time"])) == ((ended - 75) * 1000, ended * 1000)


def test_with_call_level_routing_the_file_is_queued_for_routing(
    sqs: Any, queue: str, ledger: Ledger, make_settings: Any, fake: FakeStream
) -> None:
    event = fake.event_for(fake.add_recording("default:sqs-2", b"x" * 100))
    sqs.send_message(QueueUrl=queue, MessageBody=sns(raw(event)))
    queued = Queued()
    assert poll(make_settings(), ledger, sqs, queue, queued, wait=1).recorded == 1
    file = ready_file(event)
    assert file is not None
    assert queued == [file.file_id] and ledger.file(file.file_id)["routing"] == "pending"
    assert on_queue(sqs, queue) == (0, 0)


def test_the_same_event_twice_gives_one_transfer_and_both_messages_are_deleted(
    sqs: Any, queue: str, ledger: Ledger, make_settings: Any, fake: FakeStream
) -> None:
    event = fake.event_for(fake.add_recording("default:sqs-dup", b"x" * 100))
    settings, queued = make_settings(call_storage_key=""), Queued()
    for body in (raw(event), b64_gzip(event)):
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    results = [poll(settings, ledger, sqs, queue, queued, wait=1) for _ in range(2)]
    assert sum(r.recorded for r in results) == 1 and sum(r.known for r in results) == 1
    assert len(ledger.ids()) == 1 and queued == ledger.ids()
    assert on_queue(sqs, queue) == (0, 0)


def test_a_recording_failed_message_is_noted_and_deleted(
    sqs: Any, queue: str, ledger: Ledger, make_settings: Any
) -> None:
    failed = {"type": "call.recording_failed", "call_cid": "default:broken", "egress_id": "eg-1",
              "error": "egress crashed", "created_at": "2026-01-01T00:00:00Z"}
    sqs.send_message(QueueUrl=queue, MessageBody=b64_plain(failed))
    assert poll(make_settings(), ledger, sqs, queue, wait=1) == PollResult(received=1, failures_noted=1)
    (noted,) = ledger.stream_failures()
    assert (noted["call_cid"], noted["kind"], noted["error"]) == ("default:broken", "recording", "egress crashed")
    assert on_queue(sqs, queue) == (0, 0)


def test_an_ignored_event_type_is_deleted(sqs: Any, queue: str, ledger: Ledger, make_settings: Any) -> None:
    sqs.send_message(QueueUrl=queue, MessageBody=raw(EVENT))
    assert poll(make_settings(), ledger, sqs, queue, wait=1) == PollResult(received=1, ignored=1)
    assert on_queue(sqs, queue) == (0, 0) and ledger.ids() == []


def test_a_frame_message_is_ignored_unless_enabled_then_recorded_and_counted_by_kind(
    sqs: Any, queue: str, ledger: Ledger, make_settings: Any, fake: FakeStream
) -> None:
    event = fake.event_for(fake.add_frame_recording("default:sqs-frames", b"jpeg"))
    stats = Stats(ledger.redis)
    sqs.send_message(QueueUrl=queue, MessageBody=raw(event))
    assert poll(make_settings(), ledger, sqs, queue, wait=1) == PollResult(received=1, ignored=1)
    assert ledger.ids() == [] and stats.files_received() == {}
    settings = make_settings(call_storage_key="", kinds=["frame_recording"])
    for _ in range(2):  # the second: a redelivery, known, not counted again
        sqs.send_message(QueueUrl=queue, MessageBody=b64_gzip(event))
        result = poll_once(settings, ledger, Queued(), sqs, queue, wait_seconds=1, stats=stats)
    assert (result.received, result.known) == (1, 1)
    assert [t.kind for t in ledger.iter_transfers()] == ["frame_recording"]
    assert stats.files_received() == {"frame_recording": 1}
    assert on_queue(sqs, queue) == (0, 0)


def test_a_malformed_message_is_deleted_and_logged_without_its_signed_url(
    sqs: Any, queue: str, ledger: Ledger, make_settings: Any, fake: FakeStream
) -> None:
    event = fake.event_for(fake.add_recording("default:sqs-bad", b"x" * 100))
    event["call_recording"]["start_time"] = "yesterday"
    ids = [sqs.send_message(QueueUrl=queue, MessageBody=body)["MessageId"]
           for body in ("garbage", b64_gzip(event))]
    with capture_logs() as logs:
        result = poll(make_settings(), ledger, sqs, queue, wait=1)
    assert result == PollResult(received=2, malformed=2)
    assert on_queue(sqs, queue) == (0, 0) and ledger.ids() == []
    malformed = [entry for entry in logs if entry["event"] == "sqs_message_malformed"]
    assert sorted(entry["message_id"] for entry in malformed) == sorted(ids)
    assert {entry["log_level"] for entry in malformed} == {"error"}
    assert any("start_time" in entry["reason"] for entry in malformed)
    assert "Signature=" not in repr(logs) and "Expires=" not in repr(logs)


def test_with_redis_down_the_message_stays_and_is_recorded_once_redis_is_back(
    sqs: Any, queue: str, ledger: Ledger, make_settings: Any, fake: FakeStream
) -> None:
    settings = make_settings(call_storage_key="")
    event = fake.event_for(fake.add_recording("default:sqs-down", b"x" * 100))
    sqs.send_message(QueueUrl=queue, MessageBody=b64_gzip(event))
    down = Ledger(connect("redis://127.0.0.1:1/0", fail_fast=True))
    queued = Queued()
    with capture_logs() as logs:
        assert poll(settings, down, sqs, queue, queued, wait=1) == PollResult(received=1, not_recorded=1)
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["sqs_message_not_recorded"]
    assert on_queue(sqs, queue) == (0, 1) and queued == []  # in flight: not deleted

    result = poll(settings, ledger, sqs, queue, queued, wait=5)  # visible again after the 1 s timeout
    assert result == PollResult(received=1, recorded=1)
    assert queued == ledger.ids() and len(queued) == 1
    assert on_queue(sqs, queue) == (0, 0)


def test_an_enqueue_failure_still_deletes_the_recorded_message(
    sqs: Any, queue: str, ledger: Ledger, make_settings: Any, fake: FakeStream
) -> None:
    def broker_down(ids: Sequence[str]) -> None:
        raise ConnectionError("broker unreachable")

    event = fake.event_for(fake.add_recording("default:sqs-nobroker", b"x" * 100))
    sqs.send_message(QueueUrl=queue, MessageBody=raw(event))
    with capture_logs() as logs:
        assert poll(make_settings(call_storage_key=""), ledger, sqs, queue, broker_down, wait=1).recorded == 1
    assert "transfer_enqueue_failed" in [e["event"] for e in logs]
    assert on_queue(sqs, queue) == (0, 0) and len(ledger.ids("queued")) == 1


def test_the_loop_survives_a_missing_queue_and_records_once_it_exists(
    sqs: Any, ledger: Ledger, make_settings: Any, fake: FakeStream
) -> None:
    name = f"late-{uuid.uuid4().hex[:12]}"
    url = str(sqs.create_queue(QueueName=name)["QueueUrl"])
    sqs.delete_queue(QueueUrl=url)
    queued, stop = Queued(), threading.Event()
    args = (make_settings(call_storage_key=""), ledger, queued, sqs, url, stop)
    with capture_logs() as logs:
        thread = threading.Thread(target=run_sqs_intake, args=args, kwargs={"wait_seconds": 1})
        thread.start()
        try:
            wait_until(lambda: any(e["event"] == "sqs_receive_failed" for e in logs), timeout=10,
                       message="a failed receive")
            assert thread.is_alive()
            assert sqs.create_queue(QueueName=name)["QueueUrl"] == url
            event = fake.event_for(fake.add_recording("default:sqs-late", b"x" * 100))
            sqs.send_message(QueueUrl=url, MessageBody=b64_gzip(event))
            wait_until(lambda: len(queued) == 1, timeout=15, message="the message to be recorded")
        finally:
            stop.set()
            started = time.monotonic()
            thread.join(timeout=10)
    assert not thread.is_alive() and time.monotonic() - started < 5
    assert queued == ledger.ids()
    assert {"sqs_intake_started", "sqs_receive_failed", "sqs_message_recorded", "sqs_intake_stopped"} <= {
        e["event"] for e in logs}


def test_a_message_for_a_file_past_its_deadline_is_deleted_and_records_nothing(
    sqs: Any, queue: str, ledger: Ledger, make_settings: Any, fake: FakeStream
) -> None:
    """A replayed (or very late) message: Stream deleted the file, so nothing is recorded (it would be
    `lost` at once) and the message is deleted as handled."""
    ended = datetime.now(UTC) - timedelta(days=14, minutes=1)
    event = fake.event_for(fake.add_recording("default:sqs-late", b"x" * 100, end_time=ended))
    for settings, body in ((make_settings(call_storage_key=""), b64_gzip(event)), (make_settings(), raw(event))):
        sqs.send_message(QueueUrl=queue, MessageBody=body)
        assert poll(settings, ledger, sqs, queue, wait=1) == PollResult(received=1, expired=1)
        assert on_queue(sqs, queue) == (0, 0)
    assert ledger.redis.keys("archiver:*") == []
