"""Keeps the fake honest: drives it with the official ``getstream`` SDK, raw httpx and the samples."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from getstream import Stream  # type: ignore[import-untyped]
from getstream.exceptions import (  # type: ignore[import-untyped]
    StreamApiException,
    StreamRateLimitException,
)
from getstream.models import (  # type: ignore[import-untyped]
    APIError,
    CallFrameRecordingFrameReadyEvent,
    CallRecordingReadyEvent,
    CallStatsReportReadyEvent,
    GetCallReportResponse,
    GetCallResponse,
    ListRecordingsResponse,
    ListTranscriptionsResponse,
    QueryCallsResponse,
    SortParamRequest,
)
from getstream.webhook import (  # type: ignore[import-untyped]
    InvalidWebhookError,
    parse_event,
    verify_and_parse_webhook,
    verify_webhook_signature,
)

from tests.fakestream.httpbase import QuietHandler, RunningServer
from tests.fakestream.models import parse_timestamp, to_unix_ns
from tests.fakestream.server import (
    FakeStream,
    StoredFile,
    recording_ready_event,
    send_webhook_with_retries,
    start_fake_stream,
    transcription_ready_event,
)

SAMPLES = Path("/work/shared/samples")
T0 = datetime(2025, 10, 12, 20, 44, 43, 205000, tzinfo=UTC)


@pytest.fixture
def sdk(fake: FakeStream) -> Iterator[Stream]:
    """The official SDK client pointed at the fake."""
    client = Stream(api_key=fake.api_key, api_secret=fake.api_secret, base_url=fake.base_url)
    yield client
    client.close()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """A plain httpx client."""
    with httpx.Client(timeout=10) as client:
        yield client


def _sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text())  # type: ignore[no-any-return]


def _close(a: datetime, b: datetime) -> bool:
    """Equal within 2 µs (the SDK turns nanoseconds into datetimes through a float)."""
    return abs(a - b) <= timedelta(microseconds=2)


# =========================================================================== webhooks


class _Capture(QuietHandler):
    """Loopback webhook receiver that records requests and answers queued statuses."""

    seen: list[tuple[dict[str, str], bytes]]
    statuses: list[int]

    def do_POST(self) -> None:
        self.seen.append((self.request_headers(), self.read_body()))
        self.send_full(self.statuses.pop(0) if self.statuses else 200, b"ok", {"Content-Type": "text/plain"})


@pytest.fixture
def receiver() -> Iterator[tuple[str, _Capture]]:
    handler = type("Capture", (_Capture,), {"seen": [], "statuses": []})
    server = RunningServer(handler)
    yield f"http://{server.host}/webhooks/stream", handler  # type: ignore[misc]
    server.stop()


def test_webhook_signature_verifies_with_sdk_plain_and_gzip(fake: FakeStream, receiver: Any) -> None:
    url, capture = receiver
    rec = fake.add_recording("default:weekly-sync-42", b"media")
    assert fake.deliver(url, rec).status_code == 200
    assert fake.deliver(url, rec, gzip=True, webhook_id="wh-1", attempt=2).status_code == 200
    (plain_h, plain), (gz_h, gz) = capture.seen

    assert verify_webhook_signature(plain, plain_h["x-signature"], fake.api_secret)
    assert re.fullmatch(r"[0-9a-f]{64}", plain_h["x-signature"])
    assert plain_h["x-api-key"] == fake.api_key and plain_h["x-webhook-attempt"] == "1"
    assert plain_h["content-type"] == "application/json" and "content-encoding" not in plain_h
    uuid.UUID(plain_h["x-webhook-id"])

    assert gz_h["content-encoding"] == "gzip" and gz[:2] == b"\x1f\x8b"
    assert (gz_h["x-webhook-id"], gz_h["x-webhook-attempt"]) == ("wh-1", "2")
    assert not verify_webhook_signature(gz, gz_h["x-signature"], fake.api_secret)  # signs the gunzipped bytes
    assert verify_webhook_signature(gzip.decompress(gz), gz_h["x-signature"], fake.api_secret)
    tampered = gzip.decompress(gz).replace(b"composite", b"individual")
    assert not verify_webhook_signature(tampered, gz_h["x-signature"], fake.api_secret)
    assert not verify_webhook_signature(plain, plain_h["x-signature"], "another-secret")


def test_webhook_forged_and_missing_headers(fake: FakeStream, receiver: Any) -> None:
    url, capture = receiver
    rec = fake.add_recording("default:x", b"media")
    fake.deliver(url, rec, signature="0" * 64, headers_override={"X-API-KEY": None, "x-webhook-id": "dup"})
    headers, body = capture.seen[0]
    assert headers["x-signature"] == "0" * 64 and "x-api-key" not in headers
    assert headers["x-webhook-id"] == "dup"
    assert not verify_webhook_signature(body, headers["x-signature"], fake.api_secret)


def test_webhook_retries_keep_the_same_id(fake: FakeStream, receiver: Any) -> None:
    url, capture = receiver
    capture.statuses.extend([503, 429])
    rec = fake.add_recording("default:x", b"media")
    outcomes = send_webhook_with_retries(url, fake.event_for(rec), api_key=fake.api_key, api_secret=fake.api_secret)
    assert [o.status_code for o in outcomes if isinstance(o, httpx.Response)] == [503, 429, 200]
    assert len({h["x-webhook-id"] for h, _ in capture.seen}) == 1
    assert [h["x-webhook-attempt"] for h, _ in capture.seen] == ["1", "2", "3"]


def test_ready_events_match_the_samples(fake: FakeStream) -> None:
    rec = fake.add_recording("default:weekly-sync-42", b"m", start_time=T0, end_time=T0 + timedelta(hours=1))
    event = recording_ready_event(rec)
    sample = _sample("call.recording_ready.json")
    assert list(event) == list(sample) and list(event["call_recording"]) == list(sample["call_recording"])
    assert event["call_recording"]["start_time"] == "2025-10-12T20:44:43.205Z"
    assert event["call_recording"]["filename"] == "rec_default_weekly-sync-42_720p_1760301883205.mp4"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", event["created_at"])

    legacy = recording_ready_event(rec, legacy=True)
    legacy_sample = _sample("call.recording_ready.legacy.json")
    assert set(legacy) == set(legacy_sample) and set(legacy["call_recording"]) == set(legacy_sample["call_recording"])

    ns = recording_ready_event(rec, ns_timestamps=True, url="http://elsewhere/x")
    assert isinstance(ns["created_at"], int) and ns["call_recording"]["start_time"] == to_unix_ns(T0)
    assert ns["call_recording"]["url"] == "http://elsewhere/x"

    tr = fake.add_transcription("default:mkzN17EUrgvn", b'{"type":"speech"}\n', start_time=T0)
    tr_event = transcription_ready_event(tr)
    tr_sample = _sample("call.transcription_ready.json")
    tr_sample.pop("received_at")
    assert list(tr_event) == list(tr_sample)
    assert set(tr_event["call_transcription"]) == set(tr_sample["call_transcription"])
    assert tr.filename == "transcript_default_mkzN17EUrgvn_1760301883205.jsonl"


def test_sdk_parses_ns_webhook_events_but_not_rfc3339(fake: FakeStream) -> None:
    """Finding: the SDK's webhook parser only takes integer-ns date-times (like its REST models)."""
    rec = fake.add_recording("default:x", b"m", start_time=T0)
    body = json.dumps(recording_ready_event(rec, ns_timestamps=True)).encode()
    parsed = verify_and_parse_webhook(gzip.compress(body), _sig(body, fake), fake.api_secret)
    assert isinstance(parsed, CallRecordingReadyEvent)
    assert parsed.call_recording.session_id == rec.session_id and _close(parsed.call_recording.start_time, T0)
    with pytest.raises(InvalidWebhookError):
        parse_event(json.dumps(recording_ready_event(rec)).encode())


def _sig(body: bytes, fake: FakeStream) -> str:
    """X-SIGNATURE computed independently of the fake."""
    return hmac.new(fake.api_secret.encode(), body, hashlib.sha256).hexdigest()


# =========================================================================== REST via the SDK


def test_sdk_list_recordings_transcriptions_and_get_call(fake: FakeStream, sdk: Stream) -> None:
    ended = T0 + timedelta(hours=1)
    fake.add_call("default", "weekly-sync-42", ended_at=ended, created_at=T0, custom={"archive_storage": "gcs"})
    rec = fake.add_recording("default:weekly-sync-42", b"a" * 10, start_time=T0, end_time=ended)
    indiv = fake.add_recording("default:weekly-sync-42", b"b", recording_type="individual", start_time=ended)
    tr = fake.add_transcription("default:weekly-sync-42", b"{}\n", start_time=T0, end_time=ended)
    call = sdk.video.call("default", "weekly-sync-42")

    recordings = call.list_recordings().data.recordings
    assert [r.filename for r in recordings] == [rec.filename, indiv.filename]
    assert indiv.filename.endswith(".mkv") and recordings[1].recording_type == "individual"
    first = recordings[0]
    assert (first.session_id, first.recording_type) == (rec.session_id, "composite")
    assert _close(first.start_time, T0) and _close(first.end_time, ended)
    expires = re.search(r"Expires=(\d+)", first.url)
    assert expires and abs(int(expires[1]) - (time.time() + 900)) < 5  # signed now, 15 min lifetime
    assert httpx.get(first.url).content == b"a" * 10

    transcriptions = call.list_transcriptions().data.transcriptions
    assert [(t.filename, t.session_id) for t in transcriptions] == [(tr.filename, tr.session_id)]

    got = call.get().data
    assert got.call.cid == "default:weekly-sync-42" and got.call.custom == {"archive_storage": "gcs"}
    assert _close(got.call.ended_at, ended) and _close(got.call.created_at, T0)
    assert got.call.settings.recording.quality == "720p" and got.members == []
    assert got.duration.endswith("ms")


def test_responses_parse_strictly_into_sdk_models(fake: FakeStream, sdk: Stream) -> None:
    """Every required field is present: the SDK models parse with infer_missing=False."""
    fake.add_call("default", "strict", custom={"k": 1})
    rec = fake.add_recording("default:strict", b"x")
    fake.add_transcription("default:strict", b"{}\n")
    with httpx.Client(
        base_url=f"{fake.base_url}/api/v2/video",
        params={"api_key": fake.api_key},
        headers={"Authorization": sdk.token, "stream-auth-type": "jwt"},
    ) as api:
        pairs = [
            (api.get("/call/default/strict"), GetCallResponse),
            (api.post("/calls", json={}), QueryCallsResponse),
            (api.get("/call/default/strict/recordings"), ListRecordingsResponse),
            (api.get("/call/default/strict/transcriptions"), ListTranscriptionsResponse),
        ]
    for resp, model in pairs:
        assert resp.status_code == 200 and model.from_dict(resp.json(), infer_missing=False)
    event = recording_ready_event(rec, ns_timestamps=True)
    assert CallRecordingReadyEvent.from_dict(event, infer_missing=False).egress_id == rec.egress_id


def test_sdk_cannot_parse_rfc3339_rest_timestamps(fake: FakeStream, sdk: Stream) -> None:
    """Finding: getstream 7.0.0 decodes date-times with int(value); RFC 3339 strings make parsing fail
    (a ValueError the SDK then masks as KeyError('code') while building StreamApiException)."""
    fake.add_recording("default:x", b"m")
    fake.timestamp_format = "rfc3339"
    with pytest.raises((KeyError, StreamApiException)):
        sdk.video.call("default", "x").list_recordings()
    raw = httpx.get(
        f"{fake.base_url}/api/v2/video/call/default/x/recordings",
        params={"api_key": fake.api_key},
        headers={"Authorization": sdk.token, "stream-auth-type": "jwt"},
    ).json()
    assert parse_timestamp(raw["recordings"][0]["start_time"])


def test_sdk_query_calls_filter_sort_and_paging(fake: FakeStream, sdk: Stream) -> None:
    for i in range(7):
        fake.add_call("default", f"c{i}", ended_at=T0 + timedelta(minutes=i))
    fake.add_call("default", "ongoing")
    fake.add_call("livestream", "old", ended_at=T0 - timedelta(days=30))
    flt = {"ended_at": {"$gte": "2025-10-12T20:45:00Z"}, "type": "default"}
    sort = [SortParamRequest(field="ended_at", direction=-1)]
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(5):
        data = sdk.video.query_calls(filter_conditions=flt, sort=sort, limit=3, next=cursor).data
        seen += [c.call.id for c in data.calls]
        cursor = data.next
        if cursor is None:
            break
    assert seen == ["c6", "c5", "c4", "c3", "c2", "c1"]  # c0 ended 20:44:43 < 20:45
    ongoing = sdk.video.query_calls(filter_conditions={"ongoing": True}).data
    assert [c.call.cid for c in ongoing.calls] == ["default:ongoing"] and ongoing.next is None
    by_cid = sdk.video.query_calls(filter_conditions={"cid": {"$in": ["livestream:old", "default:c1"]}}).data
    assert {c.call.cid for c in by_cid.calls} == {"livestream:old", "default:c1"}


def test_a_reused_call_keeps_its_ended_at_and_gets_a_fresh_updated_at_and_session(
        fake: FakeStream, sdk: Stream) -> None:
    """reuse_call starts a new session: QueryCalls finds the call by `updated_at`, not by `ended_at`
    (left weeks old); its new files carry the new session; update_call sets either time alone."""
    fake.add_call("weekly", "standup", ended_at=T0 - timedelta(days=30))
    old = fake.add_recording("weekly:standup", b"old", end_time=T0 - timedelta(days=30))
    session = fake.reuse_call("weekly:standup", at=T0)
    new = fake.add_recording("weekly:standup", b"new", end_time=T0 + timedelta(minutes=5))
    assert new.session_id == session != old.session_id
    since = (T0 - timedelta(days=14)).isoformat()
    by_ended = sdk.video.query_calls(filter_conditions={"ended_at": {"$gte": since}}).data
    by_updated = sdk.video.query_calls(filter_conditions={"updated_at": {"$gte": since}}).data
    assert by_ended.calls == [] and [c.call.cid for c in by_updated.calls] == ["weekly:standup"]
    call = fake.call("weekly:standup")
    assert call is not None and call.ended_at == T0 - timedelta(days=30)
    assert call.updated_at == T0 + timedelta(minutes=5)  # the new file's end moved it on
    fake.update_call("weekly:standup", ended_at=T0)
    call = fake.call("weekly:standup")
    assert call is not None and (call.ended_at, call.updated_at) == (T0, T0 + timedelta(minutes=5))


def test_query_calls_or_matches_either_clause(fake: FakeStream, sdk: Stream) -> None:
    """$or selects calls matching any clause (it once acted as $and)."""
    fake.add_call("default", "early", ended_at=T0)
    fake.add_call("default", "late", ended_at=T0 + timedelta(days=1))
    fake.add_call("default", "neither", ended_at=T0 + timedelta(hours=12))
    later = (T0 + timedelta(days=1)).isoformat()
    flt = {"$or": [{"ended_at": {"$lte": T0.isoformat()}}, {"ended_at": {"$gte": later}}]}
    found = sdk.video.query_calls(filter_conditions=flt).data
    assert {c.call.id for c in found.calls} == {"early", "late"}


def test_query_calls_rejects_bad_requests(fake: FakeStream, sdk: Stream) -> None:
    with pytest.raises(StreamApiException) as err:
        sdk.video.query_calls(limit=101)
    assert (err.value.status_code, err.value.code) == (400, 4)
    with pytest.raises(StreamApiException):
        sdk.video.query_calls(filter_conditions={"color": "red"})
    with pytest.raises(StreamApiException):
        sdk.video.query_calls(next="not-a-cursor!")


def test_sdk_delete_recording_then_cdn_404(fake: FakeStream, sdk: Stream, http: httpx.Client) -> None:
    rec = fake.add_recording("default:del", b"bytes")
    call = sdk.video.call("default", "del")
    assert rec.session_id is not None
    assert call.delete_recording(rec.session_id, rec.filename).data.duration
    assert call.list_recordings().data.recordings == []
    assert http.get(fake.signed_url(rec)).status_code == 404
    with pytest.raises(StreamApiException) as err:
        call.delete_recording(rec.session_id, rec.filename)
    assert (err.value.status_code, err.value.code) == (404, 16)
    tr = fake.add_transcription("default:del", b"{}\n")
    assert tr.session_id is not None
    call.delete_transcription(tr.session_id, tr.filename)
    assert call.list_transcriptions().data.transcriptions == []


def test_frame_events_parse_in_the_sdk_and_their_images_come_from_the_cdn_unlisted(
        fake: FakeStream, sdk: Stream, http: httpx.Client) -> None:
    frame = fake.add_frame_recording("default:frames", b"\xff\xd8jpeg", captured_at=T0, participant="alice")
    event = fake.event_for(frame, ns_timestamps=True)
    assert list(event) == ["type", "created_at", "call_cid", "session_id", "track_type", "url", "captured_at",
                           "users", "egress_id"]  # the spec's fields, all required, in its order
    body = json.dumps(event).encode()
    parsed = verify_and_parse_webhook(body, _sig(body, fake), fake.api_secret)
    assert isinstance(parsed, CallFrameRecordingFrameReadyEvent)
    assert CallFrameRecordingFrameReadyEvent.from_dict(event, infer_missing=False).egress_id == frame.egress_id
    assert (parsed.session_id, parsed.track_type, list(parsed.users)) == (frame.session_id, "TRACK_TYPE_VIDEO",
                                                                          ["alice"])
    assert _close(parsed.captured_at, T0) and parsed.users["alice"].id == "alice"
    assert parsed.url.split("?")[0].endswith("/" + frame.filename) and frame.filename.endswith(".jpg")
    image = http.get(parsed.url)
    assert (image.status_code, image.content, image.headers["content-type"]) == (200, b"\xff\xd8jpeg",
                                                                                "image/jpeg")
    call = sdk.video.call("default", "frames")
    assert call.list_recordings().data.recordings == [] and call.list_transcriptions().data.transcriptions == []
    rfc = fake.event_for(frame, ns_timestamps=False)
    assert isinstance(rfc["captured_at"], str) and rfc["url"].startswith(f"http://{fake.cdn_host}/")


def test_stats_report_events_and_get_call_report_parse_in_the_sdk(fake: FakeStream, sdk: Stream,
                                                                 http: httpx.Client) -> None:
    fake.add_call("default", "reported", created_at=T0, ended_at=T0 + timedelta(hours=1))
    report = fake.add_stats_report("default:reported", participants=3)
    event = fake.stats_report_event(report)
    body = json.dumps(event).encode()
    parsed = verify_and_parse_webhook(body, _sig(body, fake), fake.api_secret)
    assert isinstance(parsed, CallStatsReportReadyEvent)
    assert CallStatsReportReadyEvent.from_dict(event, infer_missing=False).counts.participants == 3
    assert (parsed.call_cid, parsed.session_id) == ("default:reported", report.session_id)

    call = sdk.video.call("default", "reported")
    got = call.get_call_report(session_id=report.session_id).data
    assert isinstance(got, GetCallReportResponse) and got.duration.endswith("ms")
    assert (got.session_id, got.report.participants.sum, got.report.call.score) == (report.session_id, 3, 87.5)
    assert got.session is not None and got.session.id == report.session_id and _close(got.session.started_at, T0)
    assert call.get_call_report().data.session_id == report.session_id  # no session_id: the call's current one
    assert fake.api_requests[-2].query["session_id"] == report.session_id
    raw = http.get(f"{fake.base_url}/api/v2/video/call/default/reported/report",
                   params={"api_key": fake.api_key, "session_id": report.session_id},
                   headers={"Authorization": sdk.token, "stream-auth-type": "jwt"})
    assert GetCallReportResponse.from_dict(raw.json(), infer_missing=False).session_id == report.session_id
    with pytest.raises(StreamApiException) as err:
        call.get_call_report(session_id="no-such-session")
    assert (err.value.status_code, err.value.code) == (404, 16)


def test_sdk_get_unknown_call_is_404_code_16(sdk: Stream) -> None:
    with pytest.raises(StreamApiException) as err:
        sdk.video.call("default", "nope").get()
    assert (err.value.status_code, err.value.code, err.value.unrecoverable) == (404, 16, True)


def test_api_fault_injection(fake: FakeStream, sdk: Stream) -> None:
    fake.add_call("default", "x")
    fake.fail_next_api("/recordings", 429)
    with pytest.raises(StreamRateLimitException):
        sdk.video.call("default", "x").list_recordings()
    assert sdk.video.call("default", "x").list_recordings().data.recordings == []


# =========================================================================== auth


@pytest.mark.parametrize(
    ("case", "expected_code"),
    [("no_api_key", 2), ("bearer", 5), ("other_secret", 43), ("no_auth_type", 5), ("no_token", 5)],
)
def test_api_refuses_bad_credentials(fake: FakeStream, http: httpx.Client, case: str, expected_code: int) -> None:
    token = jwt.encode({"server": True}, fake.api_secret, algorithm="HS256")
    params: dict[str, str] = {"api_key": fake.api_key}
    headers = {"Authorization": token, "stream-auth-type": "jwt"}
    if case == "no_api_key":
        params = {}
    elif case == "bearer":
        headers["Authorization"] = f"Bearer {token}"
    elif case == "other_secret":
        headers["Authorization"] = jwt.encode({"server": True}, "x" * 40, algorithm="HS256")
    elif case == "no_auth_type":
        del headers["stream-auth-type"]
    else:
        del headers["Authorization"]
    resp = http.post(f"{fake.base_url}/api/v2/video/calls", params=params, headers=headers, json={})
    assert resp.status_code == 401
    error = APIError.from_dict(resp.json())
    assert (error.status_code, error.code, error.unrecoverable) == (401, expected_code, True)
    assert error.duration and error.details == [] and error.more_info == ""
    assert fake.api_secret not in resp.text


def test_api_accepts_server_claim_token(fake: FakeStream, http: httpx.Client) -> None:
    token = jwt.encode({"server": True}, fake.api_secret, algorithm="HS256")
    resp = http.post(
        f"{fake.base_url}/api/v2/video/calls",
        params={"api_key": fake.api_key},
        headers={"Authorization": token, "stream-auth-type": "jwt"},
        json={"limit": 100},
    )
    assert resp.status_code == 200 and resp.json()["calls"] == [] and "next" not in resp.json()
    assert fake.api_requests[-1].method == "POST"


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        start_fake_stream(api_secret="fake-secret")


# =========================================================================== CDN


def test_cdn_serves_exact_bytes_from_memory_and_disk(fake: FakeStream, http: httpx.Client, tmp_path: Path) -> None:
    disk = tmp_path / "big.bin"
    disk.write_bytes(bytes(range(256)) * 20_000)
    from_disk = fake.add_recording("default:x", disk, recording_type="raw")
    in_mem = fake.add_recording("default:x", b"\x00\x01" * 3, audio_only=True)
    for stored, ctype in ((from_disk, "application/zip"), (in_mem, "audio/mpeg")):
        resp = http.get(stored.url)
        assert resp.status_code == 200 and resp.content == stored.read_bytes()
        assert resp.headers["Content-Type"] == ctype and resp.headers["ETag"] == stored.etag
        assert int(resp.headers["Content-Length"]) == stored.size and resp.headers["Accept-Ranges"] == "bytes"
        head = http.head(stored.url)
        assert head.status_code == 200 and head.headers["Content-Length"] == str(stored.size) and not head.content
    assert in_mem.filename.endswith(".mp3") and "_audio_" in in_mem.filename
    assert fake.downloads_of(from_disk) == 1 and fake.downloads_of(in_mem) == 1


@pytest.mark.parametrize(
    ("filename", "ctype"),
    [
        ("a.mp4", "video/mp4"),
        ("b.mkv", "video/x-matroska"),
        ("c.jsonl", "application/jsonl"),
        ("we ird #1+é.mp4", "video/mp4"),
    ],
)
def test_cdn_content_types_and_escaping(fake: FakeStream, http: httpx.Client, filename: str, ctype: str) -> None:
    stored = fake.add_recording("default:esc", b"data", filename=filename)
    assert "/video/recordings/default_esc/" in stored.url and " " not in stored.url and "#" not in stored.url
    resp = http.get(stored.url)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == ctype and resp.content == b"data"


def test_cdn_refuses_expired_forged_and_unsigned(fake: FakeStream, http: httpx.Client) -> None:
    stored = fake.add_recording("default:x", b"secret media")
    other = fake.add_recording("default:x", b"other")
    expired = http.get(fake.signed_url(stored, timedelta(seconds=-1)))
    assert expired.status_code == 403 and b"<Code>AccessDenied</Code>" in expired.content
    assert b"expired" in expired.content
    forged = re.sub(r"Signature=[^&]+", "Signature=AAAA", stored.url)
    assert http.get(forged).status_code == 403
    longer = re.sub(r"Expires=\d+", f"Expires={int(time.time()) + 10**6}", stored.url)
    assert http.get(longer).status_code == 403
    assert http.get(stored.url.split("?")[0]).status_code == 403
    swapped = other.url.split("?")[0] + "?" + stored.url.split("?")[1]
    assert http.get(swapped).status_code == 403
    assert fake.downloads_of(stored) == 0


def test_cdn_deleted_file_is_404_or_403(fake: FakeStream, http: httpx.Client) -> None:
    stored = fake.add_recording("default:x", b"gone soon")
    fake.delete_file(stored)
    resp = http.get(stored.url)
    assert resp.status_code == 404 and b"NoSuchKey" in resp.content
    fake.missing_file_status = 403
    assert http.get(stored.url).status_code == 403


def test_cdn_ranges(fake: FakeStream, http: httpx.Client) -> None:
    data = bytes(range(100))
    stored = fake.add_recording("default:x", data)
    cases = {"bytes=2-5": (2, 5), "bytes=90-": (90, 99), "bytes=-3": (97, 99), "bytes=95-500": (95, 99)}
    for header, (start, end) in cases.items():
        resp = http.get(stored.url, headers={"Range": header})
        assert resp.status_code == 206 and resp.content == data[start : end + 1]
        assert resp.headers["Content-Range"] == f"bytes {start}-{end}/100"
    bad = http.get(stored.url, headers={"Range": "bytes=100-"})
    assert bad.status_code == 416 and bad.headers["Content-Range"] == "bytes */100"
    stale = http.get(stored.url, headers={"Range": "bytes=10-", "If-Range": '"not-the-etag"'})
    assert stale.status_code == 200 and stale.content == data
    fresh = http.get(stored.url, headers={"Range": "bytes=10-", "If-Range": stored.etag})
    assert fresh.status_code == 206 and fresh.content == data[10:]


def test_cdn_fail_next_and_truncate_next(fake: FakeStream, http: httpx.Client, tmp_path: Path) -> None:
    stored = fake.add_recording("default:x", b"z" * 5000)
    fake.fail_next(stored.filename, 503, count=2)
    assert [http.get(stored.url).status_code for _ in range(3)] == [503, 503, 200]
    fake.truncate_next(stored.filename, after_bytes=1000)
    with pytest.raises(httpx.RemoteProtocolError):
        http.get(stored.url)
    resumed = http.get(stored.url, headers={"Range": "bytes=1000-"})
    assert resumed.status_code == 206 and len(resumed.content) == 4000
    disk = tmp_path / "f.mp4"
    disk.write_bytes(b"q" * 300_000)
    on_disk = fake.add_recording("default:y", disk)
    fake.truncate_next("default_y", after_bytes=70_000)
    with pytest.raises(httpx.RemoteProtocolError):
        http.get(on_disk.url)
    assert fake.downloads_of(stored) == 3 and fake.downloads_of(on_disk) == 1
    methods_paths = [(m, p) for m, p, _ in fake.cdn_requests]
    assert ("GET", stored.cdn_path) in methods_paths
    assert all("Expires" not in p for _, p in methods_paths)
    assert fake.cdn_requests[-1][2].get("host") == fake.cdn_host


def test_cdn_throughput(fake: FakeStream, tmp_path: Path) -> None:
    disk = tmp_path / "big.mp4"
    with disk.open("wb") as handle:
        for _ in range(64):
            handle.write(b"\x5a" * (1 << 20))
    stored = fake.add_recording("default:big", disk)
    started, total = time.perf_counter(), 0
    with httpx.Client() as client, client.stream("GET", stored.url) as resp:
        for chunk in resp.iter_raw(1 << 20):
            total += len(chunk)
    elapsed = time.perf_counter() - started
    assert total == stored.size
    assert total / elapsed > 100e6, f"{total / elapsed / 1e6:.0f} MB/s"  # ~600+ MB/s measured; slack for CI


def test_default_names_times_and_sessions(fake: FakeStream) -> None:
    before = datetime.now(UTC)
    a = fake.add_recording("default:n", b"1")
    b = fake.add_recording("default:n", b"2")
    legacy = fake.add_recording("default:n", b"3", session_id=None, recording_type=None)
    assert a.filename != b.filename and re.fullmatch(r"rec_default_n_720p_\d{13}\.mp4", a.filename)
    assert a.session_id == b.session_id and a.session_id == fake.add_call("default", "n")["session"]["id"]
    assert a.end_time >= before and a.end_time - a.start_time == timedelta(minutes=1)
    assert legacy.session_id is None and legacy.recording_type is None
    assert isinstance(a, StoredFile) and len(a.sha256) == 64 and a.size == 1
    with pytest.raises(ValueError):
        fake.add_recording("default:n", b"dup", filename=a.filename)
    assert "Key-Pair-Id=APKA" in a.url and f"/{fake.app_id}/video/recordings/default_n/" in a.url


# =========================================================================== rate limits


def test_every_answer_carries_rate_limit_headers_the_sdk_reads(fake: FakeStream, sdk: Stream) -> None:
    """Successes and errors both carry X-RateLimit-*; the SDK parses them; no limit → a large one."""
    fake.add_call("default", "rl")
    info = sdk.video.call("default", "rl").get().rate_limit()
    assert info is not None and info.limit == 1_000_000 and info.remaining < info.limit
    assert info.reset > datetime.now(UTC) - timedelta(seconds=1)
    with pytest.raises(StreamApiException) as err:
        sdk.video.call("default", "nope").get()
    assert err.value.rate_limit_info is not None and err.value.rate_limit_info.limit == 1_000_000


def test_per_second_burst_is_limit_over_30_and_refused_with_code_9(fake: FakeStream, sdk: Stream) -> None:
    """60 a minute allows 2 a second: the third in the same second is a 429 (code 9, Retry-After in
    seconds) that the SDK raises as StreamRateLimitException; the arrivals are all counted."""
    fake.add_call("default", "burst")
    fake.limit_api("GetCall", 60)
    _start_of_a_second()
    call = sdk.video.call("default", "burst")
    first = call.get().rate_limit()
    assert first is not None and (first.limit, first.remaining) == (60, 59)
    call.get()
    with pytest.raises(StreamRateLimitException) as err:
        call.get()
    assert (err.value.status_code, err.value.code) == (429, 9)
    assert err.value.retry_after == timedelta(seconds=1)
    assert err.value.rate_limit_info is not None and err.value.rate_limit_info.remaining == 57  # of the minute
    rate = fake.api_rate("GetCall")
    assert (rate.requests, rate.limited, rate.max_per_second) == (3, 1, 3)
    assert fake.api_rate("ListRecordings").requests == 0  # per endpoint


def test_per_minute_limit_and_http_date_retry_after(fake: FakeStream, sdk: Stream) -> None:
    """Over the minute's limit (a 3-second "minute" here), a 429 whose Retry-After is an HTTP date the
    SDK parses; after the window ends, requests pass again."""
    fake.add_call("default", "minute")
    fake.limit_api("ListRecordings", 2, window=3.0)
    fake.retry_after = "http-date"
    call = sdk.video.call("default", "minute")
    while time.time() % 3.0 > 1.0:  # start early in a window, so three requests fit in one
        time.sleep(0.05)
    call.list_recordings()
    time.sleep(0.06)  # the next "second" (window / 60)
    call.list_recordings()
    time.sleep(0.06)
    with pytest.raises(StreamRateLimitException) as err:
        call.list_recordings()
    assert err.value.retry_after is not None and err.value.retry_after <= timedelta(seconds=4)  # a whole second
    time.sleep(err.value.retry_after.total_seconds() + 0.1)
    assert call.list_recordings().data.recordings == []


def test_rate_limit_headers_can_be_left_out_and_missing_calls_answer_400(fake: FakeStream, sdk: Stream) -> None:
    """An app whose answers carry no X-RateLimit-*: the SDK sees no rate-limit info. A missing call
    can answer 400 with code 16, the shape the spec lists."""
    fake.add_call("default", "bare")
    fake.rate_limit_headers = False
    assert sdk.video.call("default", "bare").get().rate_limit() is None
    fake.missing_status = 400
    with pytest.raises(StreamApiException) as err:
        sdk.video.call("default", "nope").get()
    assert (err.value.status_code, err.value.code) == (400, 16)


def test_injected_faults_carry_chosen_headers(fake: FakeStream, http: httpx.Client) -> None:
    """fail_next_api(headers=…) answers with those headers, replacing the fake's own X-RateLimit-*."""
    fake.fail_next_api("/calls", 429, headers={"Retry-After": "7, 9", "X-RateLimit-Reset": "1, 2"})
    token = jwt.encode({"server": True}, fake.api_secret, algorithm="HS256")
    response = http.post(f"{fake.base_url}/api/v2/video/calls", params={"api_key": fake.api_key}, json={},
                         headers={"Authorization": token, "stream-auth-type": "jwt"})
    assert response.status_code == 429 and response.json()["code"] == 9
    assert (response.headers["retry-after"], response.headers["x-ratelimit-reset"]) == ("7, 9", "1, 2")


def _start_of_a_second() -> None:
    """Wait until a whole second has just begun (three quick requests then share one second)."""
    while time.time() % 1.0 > 0.3:
        time.sleep(0.02)
