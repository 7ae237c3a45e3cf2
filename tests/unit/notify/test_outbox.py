"""The outbox (worker/notify/outbox.py and the ledger's ANNOUNCE): written in the same script as the state
change it announces, once per (type, subject), one delivery per endpoint that wants the type; deliveries
claimed under a lease, retried, given up, retried by command. Against a real redis-server."""

from __future__ import annotations

import time
from typing import Any

import pytest

from config import ArchiveConfig
from tests.unit.ledger.test_ledger import a_file, record
from worker.ledger.store import Ledger
from worker.notify.outbox import Outbox, endpoint_id, event_id, routes_json

A, B = "https://app.example/hooks", "https://other.example/hooks"


def archive(*endpoints: dict[str, Any], **top: Any) -> ArchiveConfig:
    return ArchiveConfig.model_validate({"notify": list(endpoints), **top})


@pytest.fixture
def notified(ledger: Ledger) -> Ledger:
    """The test's ledger, announcing to two endpoints: A wants everything, B only file.failed."""
    routes = routes_json(archive({"url": A, "secret": "a"}, {"url": B, "secret": "b", "events": ["file.failed"]}))
    return Ledger(ledger.redis, outbox=routes)


def finish(ledger: Ledger, state: str, filename: str = "rec_default_x_1.mp4", **fields: Any) -> str:
    tid = record(ledger, a_file(filename))
    claim = ledger.claim(tid, "w1", 60_000)
    assert ledger.finish(tid, claim.token, state, **fields)  # type: ignore[arg-type]
    return tid


def test_an_archived_transfer_is_announced_in_the_same_step_to_the_endpoints_that_want_it(notified: Ledger) -> None:
    tid = finish(notified, "archived", bytes=5, sha256="ab" * 32)
    outbox = Outbox(notified)
    eid = event_id("file.archived", tid)
    event = outbox.event(eid)
    assert event is not None and (event.type, event.subject) == ("file.archived", tid)
    assert event.data["state"] == "archived" and event.data["sha256"] == "ab" * 32
    assert not any(k.startswith("lease_") for k in event.data)
    assert outbox.deliveries_of(eid) == [f"{eid}:{endpoint_id(A)}"]  # B wants file.failed only
    assert outbox.ids("pending") == [f"{eid}:{endpoint_id(A)}"]
    assert outbox.due_for("file.archived", tid) == [f"{eid}:{endpoint_id(A)}"]


def test_a_failed_transfer_goes_to_both_and_nothing_is_written_without_endpoints(ledger: Ledger,
                                                                                 notified: Ledger) -> None:
    tid = finish(notified, "failed", error="no such bucket")
    assert len(Outbox(notified).deliveries_of(event_id("file.failed", tid))) == 2
    quiet = finish(ledger, "failed", filename="rec_default_x_2.mp4")
    assert Outbox(ledger).event(event_id("file.failed", quiet)) is None


def test_a_retry_or_requeue_ends_no_second_event_of_the_same_type(notified: Ledger) -> None:
    tid = finish(notified, "failed", error="boom")
    assert notified.retry(tid)
    claim = notified.claim(tid, "w2", 60_000)
    assert notified.finish(tid, claim.token, "failed", error="boom again")
    assert len(Outbox(notified).ids()) == 2  # one event (two endpoints), not two


def test_a_noted_stream_failure_is_announced_once(notified: Ledger) -> None:
    failure = {"kind": "recording", "call_cid": "default:x", "egress_id": "eg1", "error": "encoder died"}
    assert notified.note_failure(failure)
    assert not notified.note_failure(failure)
    outbox = Outbox(notified)
    events = {outbox.delivery(d).event_id for d in outbox.ids()}  # type: ignore[union-attr]
    assert len(events) == 1
    event = outbox.event(events.pop())
    assert event is not None and event.type == "stream.failure" and event.data["error"] == "encoder died"


def test_at_risk_transfers_are_announced_with_the_count_once_each(notified: Ledger) -> None:
    queued = record(notified, a_file())
    notified.publish_at_risk(1, 123, [queued])
    notified.publish_at_risk(1, 456, [queued])
    assert notified.redis.get(notified.keys.at_risk) == "1" and notified.redis.get(notified.keys.at_risk_at) == "456"
    assert Outbox(notified).deliveries_of(event_id("file.at_risk", queued)) == [
        f"{event_id('file.at_risk', queued)}:{endpoint_id(A)}"]


def test_a_delivery_is_claimed_once_retried_with_backoff_and_delivered(notified: Ledger) -> None:
    tid = finish(notified, "archived")
    outbox = Outbox(notified)
    [did] = outbox.due_for("file.archived", tid)
    first = outbox.claim(did, 60_000)
    assert first.claimed and first.attempt == 1
    assert outbox.claim(did, 60_000).status == "busy"
    assert outbox.finish(did, first.token, ok=False, status=503, error="HTTP 503", retry_in_ms=60_000) == "pending"
    assert outbox.claim(did, 60_000).status == "not_due"
    notified.redis.hset(notified.keys.notify_delivery(did), "next_at", 0)
    second = outbox.claim(did, 60_000)
    assert outbox.finish(did, first.token, ok=True, status=200) == "fenced"
    assert outbox.finish(did, second.token, ok=True, status=200) == "delivered"
    delivery = outbox.delivery(did)
    assert delivery is not None and (delivery.state, delivery.attempts, delivery.last_status) == ("delivered", 2, 200)
    assert [a.get("status") for a in delivery.history] == [503, 200]
    assert outbox.counts()["delivered"] == 1 and outbox.outcomes() == {"delivered": 1, "retried": 1, "failed": 0}
    assert notified.redis.zscore(notified.keys.notify_due, did) is None


def test_a_dead_workers_delivery_is_claimed_again_after_its_lease_and_its_attempt_shown(notified: Ledger) -> None:
    tid = finish(notified, "archived")
    outbox = Outbox(notified)
    [did] = outbox.due_for("file.archived", tid)
    assert outbox.claim(did, 200).claimed
    time.sleep(0.3)
    again = outbox.claim(did, 60_000)
    assert again.claimed and again.attempt == 2
    delivery = outbox.delivery(did)
    assert delivery is not None and "abandoned" in delivery.history[0]["error"]


def test_past_notify_retry_for_it_fails_and_a_command_retries_it(ledger: Ledger) -> None:
    notified = Ledger(ledger.redis, outbox=routes_json(archive({"url": A, "secret": "a"}, notify_retry_for="0s")))
    tid = finish(notified, "lost")
    outbox = Outbox(notified)
    [did] = outbox.due_for("file.lost", tid)
    claim = outbox.claim(did, 60_000)
    assert outbox.finish(did, claim.token, ok=False, error="ConnectError: refused", retry_in_ms=10) == "failed"
    assert outbox.ids("failed") == [did] and outbox.outcomes()["failed"] == 1
    assert outbox.retry(did, 60_000)
    assert outbox.ids("pending") == [did] and outbox.claim(did, 60_000).claimed


def test_delivered_ones_are_forgotten_after_a_while_and_an_event_with_the_last_of_them(notified: Ledger) -> None:
    tid = finish(notified, "failed", error="boom")  # two endpoints want file.failed
    outbox = Outbox(notified)
    eid = event_id("file.failed", tid)
    first, second = outbox.deliveries_of(eid)
    assert outbox.finish(first, outbox.claim(first, 60_000).token, ok=True, status=200) == "delivered"
    assert outbox.forget_delivered(60_000) == 0  # delivered just now: kept
    assert outbox.forget_delivered(0) == 1
    assert outbox.delivery(first) is None and outbox.ids() == [second] and outbox.event(eid) is not None
    assert outbox.finish(second, outbox.claim(second, 60_000).token, ok=True, status=204) == "delivered"
    assert outbox.forget_delivered(0) == 1
    assert outbox.event(eid) is None and not list(notified.redis.scan_iter(match="archiver:notify:*:ev_*"))
    assert not notified.redis.exists(notified.keys.notify_state("delivered"))
