"""The webhook receiver over real HTTP (worker/edge/web/app.py), with a real Redis ledger."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import API_KEY, API_SECRET
from tests.support.processes import wait_until
from tests.support.samples import SAMPLES, fresh_event, fresh_sample, shift_to
from tests.support.webserver import serve_in_thread
from tests.unit.conftest import Receiver, ledger_keys, serve
from worker.edge.web import paths
from worker.edge.web.app import create_app
from worker.intake.webhook import sign
from worker.ledger.connection import connect
from worker.ledger.store import Ledger
from worker.monitoring.stats import Stats


def sample(name: str) -> bytes:
    """Sample `name` (tests/samples) with its times moved to now: an old one is refused as expired."""
    return fresh_sample(name)


def test_a_new_recording_is_recorded_and_queued(receiver: Receiver) -> None:
    response = receiver.post(sample("call.recording_ready.json"))
    assert response.status_code == 202
    (tid,) = response.json()["transfers"]
    transfer = receiver.ledger.get(tid)
    assert transfer is not None and transfer.state == "queued"
    assert transfer.key == ("audio_room/1_dtxQ4PTcFRTweqGBx5TpN/"
                            "rec_audio_room_1_dtxQ4PTcFRTweqGBx5TpN_audio_1760301883205.mp3")
    wait_until(lambda: receiver.queued == [tid], timeout=5, message="the transfer to be queued after the answer")


def test_a_known_file_answers_200_and_is_not_queued_again(receiver: Receiver) -> None:
    body = sample("call.recording_ready.json")
    assert receiver.post(body).status_code == 202
    for _ in range(4):
        assert receiver.post(body).status_code == 200
    assert len(receiver.ledger.ids()) == 1
    wait_until(lambda: len(receiver.queued) == 1, timeout=5, message="one transfer to be queued")


@pytest.mark.parametrize("name", ["call.recording_ready.legacy.json", "call.recording_ready.ns-timestamps.json",
                                  "call.transcription_ready.json"])
def test_legacy_nanosecond_and_transcription_payloads_are_accepted(receiver: Receiver, name: str) -> None:
    assert receiver.post(sample(name)).status_code == 202


def test_a_gzip_body_is_verified_over_its_uncompressed_bytes(receiver: Receiver) -> None:
    assert receiver.post(sample("call.transcription_ready.json"), compress=True).status_code == 202


@pytest.mark.parametrize(
    "change",
    [{"secret": "another-secret"}, {"key": "another-key"}, {"X-SIGNATURE": ""}, {"X-SIGNATURE": "00" * 32}],
)
def test_bad_credentials_get_401_and_record_nothing(receiver: Receiver, change: dict[str, str]) -> None:
    response = receiver.post(sample("call.recording_ready.json"), **change)
    assert response.status_code == 401
    assert "error" in response.json()
    assert receiver.ledger.ids() == [] and receiver.queued == []
    assert ledger_keys(receiver.ledger) == []


def test_malformed_payloads_get_400_with_the_reason(receiver: Receiver) -> None:
    event = json.loads(sample("call.recording_ready.json"))
    del event["call_recording"]["url"]
    response = receiver.post(json.dumps(event).encode())
    assert response.status_code == 400
    assert "call_recording.url" in response.json()["error"]
    assert receiver.post(b"{oops").status_code == 400
    assert ledger_keys(receiver.ledger) == []


def test_other_events_get_200_and_are_ignored(receiver: Receiver) -> None:
    response = receiver.post(json.dumps({"type": "call.session_started", "call_cid": "a:b"}).encode())
    assert (response.status_code, response.json()["status"]) == (200, "ignored")
    assert ledger_keys(receiver.ledger) == []


def test_bodies_over_one_mib_get_413(receiver: Receiver) -> None:
    big = json.dumps({"type": "call.session_started", "pad": "x" * (1024 * 1024)}).encode()
    assert receiver.post(big).status_code == 413
    bomb = json.dumps({"type": "call.session_started", "pad": "x" * (3 * 1024 * 1024)}).encode()
    assert receiver.post(bomb, compress=True).status_code == 413


def test_with_call_routing_the_file_waits_for_its_routes(make_settings: Any, ledger: Ledger) -> None:
    server, queued = serve(make_settings(), ledger)
    with server as base:
        response = Receiver(base, queued, ledger).post(sample("call.recording_ready.json"))
        assert Receiver(base, queued, ledger).post(sample("call.recording_ready.json")).status_code == 200
    assert response.status_code == 202
    assert response.json()["transfers"] == []
    file_id = response.json()["file_id"]
    wait_until(lambda: queued == [file_id], timeout=5, message="the file to be queued for routing")
    assert ledger.file(file_id)["routing"] == "pending"
    assert ledger.redis.zscore("archiver:unrouted", file_id) is not None


def test_stream_s3_route_records_the_file_as_skipped(make_settings: Any, ledger: Ledger) -> None:
    settings = make_settings(default_storage="stream-s3", call_storage_key="")
    server, queued = serve(settings, ledger)
    with server as base:
        response = Receiver(base, queued, ledger).post(sample("call.recording_ready.json"))
    assert response.status_code == 202
    (transfer,) = list(ledger.iter_transfers())
    assert transfer.state == "skipped" and "stream-s3" in (transfer.error or "")
    assert queued == []


def test_redis_down_gives_503_and_health_stays_alive(make_settings: Any) -> None:
    settings = make_settings()
    dead = Ledger(connect("redis://127.0.0.1:1/0", fail_fast=True))
    server, queued = serve(settings, dead)
    with server as base:
        response = Receiver(base, queued, dead).post(sample("call.recording_ready.json"))
        assert response.status_code == 503
        assert httpx.get(f"{base}{paths.HEALTHZ}").status_code == 200
        assert httpx.get(f"{base}{paths.READYZ}").status_code == 503
    assert queued == []


def test_readyz_is_200_when_redis_answers(receiver: Receiver) -> None:
    assert httpx.get(f"{receiver.base}{paths.READYZ}").json() == {"status": "ready"}


def test_an_enqueue_failure_still_answers_202(make_settings: Any, ledger: Ledger) -> None:
    def broken(_: Sequence[str]) -> None:
        raise redis.ConnectionError("broker down")

    with serve_in_thread(create_app(make_settings(call_storage_key=""), ledger, broken)) as base:
        response = Receiver(base, [], ledger).post(sample("call.recording_ready.json"))
    assert response.status_code == 202
    assert len(ledger.ids("queued")) == 1


def test_stream_failure_events_are_kept(receiver: Receiver) -> None:
    event = {"type": "call.recording_failed", "created_at": "2026-11-27T10:00:00Z", "call_cid": "default:broken",
             "egress_id": "EG_1", "recording_type": "composite"}
    response = receiver.post(json.dumps(event).encode())
    assert (response.status_code, response.json()["status"]) == (200, "failure_noted")
    transcription = {"type": "call.transcription_failed", "created_at": 1764237600000000000,
                     "call_cid": "default:broken", "egress_id": "EG_2", "error": "no audio"}
    assert receiver.post(json.dumps(transcription).encode()).json()["kind"] == "transcription"
    newest, oldest = receiver.ledger.stream_failures()
    assert (newest["kind"], newest["error"], oldest["egress_id"]) == ("transcription", "no audio", "EG_1")
    assert receiver.ledger.ids() == []
    bad = receiver.post(json.dumps({**event, "call_cid": "nocolon"}).encode())
    assert bad.status_code == 400 and "call_cid" in bad.json()["error"]


def test_a_failure_event_delivered_again_is_kept_once(receiver: Receiver) -> None:
    event = {"type": "call.recording_failed", "created_at": "2026-11-27T10:00:00Z", "call_cid": "default:again",
             "egress_id": "EG_9"}
    for _ in range(5):
        assert receiver.post(json.dumps(event).encode()).json()["status"] == "failure_noted"
    assert len(receiver.ledger.stream_failures()) == 1


def test_a_gzip_body_without_content_encoding_is_inflated_and_verified_over_its_json(receiver: Receiver) -> None:
    """gzip is told by its first bytes (a proxy may drop the header); the signature is over the JSON."""
    body = sample("call.transcription_ready.json")
    zipped = gzip.compress(body)
    forged = {"X-API-KEY": API_KEY, "X-SIGNATURE": sign(zipped, API_SECRET)}  # signed over the gzip bytes
    assert httpx.post(f"{receiver.base}{paths.WEBHOOK}", content=zipped, headers=forged, timeout=10
                      ).status_code == 401
    sent = {"X-API-KEY": API_KEY, "X-SIGNATURE": sign(body, API_SECRET)}
    response = httpx.post(f"{receiver.base}{paths.WEBHOOK}", content=zipped, headers=sent, timeout=10)
    assert response.status_code == 202, response.text
    assert receiver.ledger.file(response.json()["file_id"])["filename"] == json.loads(body)[
        "call_transcription"]["filename"]


def test_a_plain_body_marked_gzip_is_read_as_it_is(receiver: Receiver) -> None:
    """Something on the way inflated the body and kept `Content-Encoding: gzip`: accepted, not 400."""
    response = receiver.post(sample("call.recording_ready.json"), **{"Content-Encoding": "gzip"})
    assert response.status_code == 202, response.text


def test_a_corrupt_gzip_body_gets_400_with_the_reason(receiver: Receiver) -> None:
    body = sample("call.recording_ready.json")
    for broken, reason in [(b"\x1f\x8b" + b"\0" * 20, "not valid gzip"), (gzip.compress(body)[:-12], "truncated")]:
        for encoding in ({"Content-Encoding": "gzip"}, {}):
            response = httpx.post(f"{receiver.base}{paths.WEBHOOK}", content=broken, timeout=10,
                                  headers={"X-API-KEY": API_KEY, "X-SIGNATURE": sign(body, API_SECRET)} | encoding)
            assert response.status_code == 400 and reason in response.json()["error"], response.text
    assert ledger_keys(receiver.ledger) == []


def test_float_and_numeric_string_nanosecond_timestamps_are_accepted(receiver: Receiver) -> None:
    """As Stream's SDK reads them: start_time as float ns, end_time as a string of ns digits."""
    event = json.loads(sample("call.recording_ready.ns-timestamps.json"))
    ended = int(time.time()) - 60  # whole seconds: exact as a float of nanoseconds
    event["call_recording"] |= {"start_time": float((ended - 75) * 10**9), "end_time": str(ended * 10**9)}
    response = receiver.post(json.dumps(event).encode())
    assert response.status_code == 202, response.text
    record = receiver.ledger.file(response.json()["file_id"])
    assert (int(record["start_time"]), int(record["end_time"])) == ((ended - 75) * 1000, ended * 1000)


# -- replays: a file past its deadline, an older event after a newer one ------------------------------------

def test_a_replayed_delivery_of_a_file_past_its_deadline_is_expired_and_records_nothing(
        receiver: Receiver) -> None:
    """The samples as published ended long ago: Stream deleted the files, so a replay of their signed
    deliveries is answered 200 `expired`, counted, and nothing is recorded or queued."""
    for name in ("call.recording_ready.json", "call.recording_ready.ns-timestamps.json",
                 "call.transcription_ready.json"):
        response = receiver.post((SAMPLES / name).read_bytes())
        assert (response.status_code, response.json()["status"]) == (200, "expired"), response.text
    assert ledger_keys(receiver.ledger) == [] and receiver.ledger.ids() == []
    wait_until(lambda: Stats(receiver.ledger.redis, receiver.ledger.prefix).webhooks() == {"expired": 3}, timeout=5,
               message="three deliveries counted expired")
    assert receiver.queued == []


@pytest.mark.parametrize("call_storage_key", ["", "archive_to"], ids=["routes-at-intake", "call-level-routing"])
def test_the_deadline_is_end_time_plus_retention(make_settings: Any, ledger: Ledger, call_storage_key: str) -> None:
    server, queued = serve(make_settings(call_storage_key=call_storage_key, retention="14d"), ledger)
    now = datetime.now(UTC)
    late = shift_to(fresh_event("call.recording_ready.json"), now - timedelta(days=14, minutes=1))
    in_time = shift_to(fresh_event("call.transcription_ready.json"), now - timedelta(days=13, hours=23))
    with server as base:
        receiver = Receiver(base, queued, ledger)
        assert receiver.post(json.dumps(late).encode()).json()["status"] == "expired"
        assert receiver.post(json.dumps(in_time).encode()).status_code == 202
    assert len(ledger.redis.keys("archiver:file:*")) == 1 + (call_storage_key == "")  # + its transfer set


def url_event(url: str, created: datetime) -> bytes:
    event = fresh_event("call.recording_ready.json")
    event["created_at"] = created.isoformat().replace("+00:00", "Z")
    event["call_recording"]["url"] = url
    return json.dumps(event).encode()


def test_an_older_event_never_replaces_the_url_of_a_newer_one(receiver: Receiver) -> None:
    now = datetime.now(UTC)
    older, newer = ("https://ohio.stream-io-cdn.com/r.mp3?Signature=OLD", now - timedelta(minutes=10)), \
        ("https://ohio.stream-io-cdn.com/r.mp3?Signature=NEW", now - timedelta(minutes=1))
    first = receiver.post(url_event(*newer))
    assert first.status_code == 202
    file_id = first.json()["file_id"]
    assert receiver.post(url_event(*older)).status_code == 200  # a replay of an earlier delivery
    assert receiver.ledger.file(file_id)["url"] == newer[0]
    newest = ("https://ohio.stream-io-cdn.com/r.mp3?Signature=NEWEST", now)
    assert receiver.post(url_event(*newest)).status_code == 200
    assert receiver.ledger.file(file_id)["url"] == newest[0]
    assert receiver.post(url_event(*newer)).status_code == 200
    assert receiver.ledger.file(file_id)["url"] == newest[0]


def test_a_replayed_event_never_replaces_a_url_refreshed_from_stream(receiver: Receiver) -> None:
    """A URL Stream's API just signed (worker.transfer.refresh) is newer than any event's: even one made a
    moment before the refresh by a clock ahead of Redis's does not replace it."""
    event = url_event("https://ohio.stream-io-cdn.com/r.mp3?Signature=EVENT", datetime.now(UTC))
    file_id = receiver.post(event).json()["file_id"]
    receiver.ledger.set_file_url(file_id, "https://ohio.stream-io-cdn.com/r.mp3?Signature=REFRESHED")
    assert receiver.post(event).status_code == 200
    assert receiver.ledger.file(file_id)["url"].endswith("REFRESHED")
    assert not receiver.ledger.set_file_url("f_gone", "https://x/y")  # no record made for a file not held
    assert receiver.ledger.file("f_gone") == {}
