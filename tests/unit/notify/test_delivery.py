"""Delivering notifications (worker/notify/delivery.py, formats.py) to a real HTTP endpoint: the JSON
body, its headers and signature as an app verifies them; Slack's text; an endpoint down, then up."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from config import ArchiveConfig
from tests.support.hooks import HookReceiver
from tests.support.processes import wait_until
from tests.unit.conftest import Receiver, serve
from tests.unit.ledger.test_ledger import a_file, record
from worker.ledger.store import Ledger
from worker.notify.delivery import Notifier
from worker.notify.outbox import Outbox, routes_json


@pytest.fixture
def hooks() -> Iterator[HookReceiver]:
    receiver = HookReceiver().up()
    yield receiver
    receiver.down()


def notifier(ledger: Ledger, *endpoints: dict[str, Any]) -> tuple[Ledger, Notifier]:
    archive = ArchiveConfig.model_validate({"notify": list(endpoints), "retry_backoff": "10ms",
                                            "transfer_lease": "10s"})
    notified = Ledger(ledger.redis, outbox=routes_json(archive))
    return notified, Notifier(notified, archive)


def archived(ledger: Ledger) -> str:
    tid = record(ledger, a_file())
    claim = ledger.claim(tid, "w1", 60_000)
    assert ledger.finish(tid, claim.token, "archived", bytes=5, sha256="ab" * 32)
    return tid


def test_a_json_delivery_is_signed_and_carries_the_transfer_as_transfers_show_prints_it(
        ledger: Ledger, hooks: HookReceiver) -> None:
    notified, sender = notifier(ledger, {"url": hooks.url, "secret": "s3cret"})
    tid = archived(notified)
    [did] = sender.due_after_transfer(tid)
    assert sender.deliver(did) == "delivered"
    [hook] = hooks.delivered()
    assert hook.signed_by("s3cret") and not hook.signed_by("other")
    assert hook.headers["Content-Type"] == "application/json"
    event = hook.event
    assert set(event) == {"id", "type", "created_at", "data"}
    assert hook.headers["X-Archiver-Event-Id"] == event["id"] == did.split(":")[0]
    transfer = notified.get(tid)
    assert transfer is not None and event["type"] == "file.archived" and event["data"] == transfer.to_json()
    assert sender.deliver(did) == "delivered"  # delivered already: not sent again
    assert len(hooks.hooks) == 1


def test_a_slack_endpoint_gets_a_line_of_text(ledger: Ledger, hooks: HookReceiver) -> None:
    notified, sender = notifier(ledger, {"url": hooks.url, "format": "slack"})
    [did] = sender.due_after_transfer(archived(notified))
    assert sender.deliver(did) == "delivered"
    text = hooks.delivered()[0].event["text"]
    assert "rec_default_x_1.mp4" in text and "default:x" in text and "archived" in text


def test_an_endpoint_down_then_failing_then_up_gets_it_with_each_attempt_recorded(
        ledger: Ledger, hooks: HookReceiver) -> None:
    notified, sender = notifier(ledger, {"url": hooks.url, "secret": "s"})
    [did] = sender.due_after_transfer(archived(notified))
    hooks.down()
    assert sender.deliver(did) == "pending"
    hooks.up()
    hooks.failing = True
    notified.redis.hset(notified.keys.notify_delivery(did), "next_at", 0)
    assert sender.deliver(did) == "pending"
    hooks.failing = False
    notified.redis.hset(notified.keys.notify_delivery(did), "next_at", 0)
    assert sender.deliver(did) == "delivered"
    delivery = Outbox(notified).delivery(did)
    assert delivery is not None and [a.get("status") for a in delivery.history] == [None, 503, 200]
    assert "ConnectError" in delivery.history[0]["error"] and "secret-in-query" not in delivery.history[0]["error"]
    assert len({h.event["id"] for h in hooks.hooks}) == 1 and len(hooks.delivered()) == 1


def test_a_failure_stream_reports_is_announced_queued_by_the_receiver_and_delivered(
        ledger: Ledger, hooks: HookReceiver, make_settings: Any) -> None:
    endpoint = {"url": hooks.url, "secret": "s", "events": ["stream.failure"]}
    settings = make_settings(call_storage_key="", notify=[endpoint])
    notified = Ledger(ledger.redis, outbox=routes_json(settings.archive))
    server, queued = serve(settings, notified)
    event = {"type": "call.recording_failed", "created_at": "2026-11-27T10:00:00Z", "call_cid": "default:broken",
             "egress_id": "EG_1", "error": "encoder died"}
    with server as base:
        for _ in range(2):  # a redelivery announces nothing more
            assert Receiver(base, queued, notified).post(json.dumps(event).encode()).status_code == 200
        wait_until(lambda: len(queued) == 1, timeout=5, message="the delivery queued after the answer")
    assert Notifier(notified, settings.archive).deliver(queued[0]) == "delivered"
    [hook] = hooks.delivered()
    assert hook.signed_by("s") and hook.event["type"] == "stream.failure"
    data = hook.event["data"]
    assert (data["call_cid"], data["egress_id"], data["error"], data["kind"]) == (
        "default:broken", "EG_1", "encoder died", "recording")
