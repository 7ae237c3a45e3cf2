"""Webhook decoding, authentication and parsing (worker/webhooks.py)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from worker.errors import BadCredentials, MalformedPayload, PayloadTooLarge
from worker.webhooks import MAX_BODY, authenticate, decompress, parse_event, parse_timestamp, ready_file, sign

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
SECRET = "s3cr3t"


def headers(body: bytes, key: str = "key", secret: str = SECRET) -> dict[str, str]:
    return {"x-api-key": key, "x-signature": sign(body, secret)}


def test_signature_is_lowercase_hex_hmac_sha256_of_the_body() -> None:
    # Known value: HMAC-SHA256(key="key", msg="The quick brown fox jumps over the lazy dog").
    expected = "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    assert sign(b"The quick brown fox jumps over the lazy dog", "key") == expected


def test_a_correct_key_and_signature_pass() -> None:
    authenticate(b"{}", headers(b"{}"), "key", SECRET)


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ({"x-api-key": "other"}, "X-Api-Key does not match"),
        ({"x-api-key": ""}, "X-Api-Key header is missing"),
        ({"x-signature": ""}, "missing"),
        ({"x-signature": sign(b"{}", "wrong-secret")}, "does not match"),
        ({"x-signature": sign(b"{ }", SECRET)}, "does not match"),
    ],
)
def test_a_wrong_key_or_signature_is_refused(given: dict[str, str], reason: str) -> None:
    with pytest.raises(BadCredentials, match=reason):
        authenticate(b"{}", headers(b"{}") | given, "key", SECRET)


def test_an_uppercase_hex_signature_is_accepted() -> None:
    authenticate(b"{}", {"x-api-key": "key", "x-signature": sign(b"{}", SECRET).upper()}, "key", SECRET)


def test_gzip_bodies_are_inflated() -> None:
    assert decompress(gzip.compress(b'{"a":1}'), "gzip") == b'{"a":1}'


def test_a_gzip_bomb_is_refused_without_inflating_it_all() -> None:
    bomb = gzip.compress(b"\0" * (50 * MAX_BODY))
    assert len(bomb) < MAX_BODY
    with pytest.raises(PayloadTooLarge):
        decompress(bomb, "gzip")


def test_broken_gzip_and_unknown_encodings_are_malformed() -> None:
    with pytest.raises(MalformedPayload, match="gzip"):
        decompress(b"not gzip", "gzip")
    with pytest.raises(MalformedPayload, match="truncated"):
        decompress(gzip.compress(b"x" * 1000)[:-10], "gzip")
    with pytest.raises(MalformedPayload, match="br"):
        decompress(b"{}", "br")


def test_plain_bodies_over_the_limit_are_too_large() -> None:
    with pytest.raises(PayloadTooLarge):
        decompress(b"x" * (MAX_BODY + 1), None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-10-12T20:44:43.205Z", datetime(2025, 10, 12, 20, 44, 43, 205000, tzinfo=UTC)),
        ("2024-03-18T08:23:27.642688204Z", datetime(2024, 3, 18, 8, 23, 27, 642688, tzinfo=UTC)),
        ("2024-03-18T10:23:27+02:00", datetime(2024, 3, 18, 8, 23, 27, tzinfo=UTC)),
        (1760301883205000000, datetime(2025, 10, 12, 20, 44, 43, 205000, tzinfo=UTC)),
    ],
)
def test_timestamps_are_rfc3339_strings_or_integer_nanoseconds(value: object, expected: datetime) -> None:
    assert parse_timestamp(value, "t") == expected


@pytest.mark.parametrize("value", ["yesterday", "2024-03-18T08:23:27", True, None, 1.5, 10**30])
def test_bad_timestamps_are_malformed(value: object) -> None:
    with pytest.raises(MalformedPayload, match="t"):
        parse_timestamp(value, "t")


@pytest.mark.parametrize(
    "sample",
    ["call.recording_ready.json", "call.recording_ready.legacy.json",
     "call.recording_ready.ns-timestamps.json", "call.transcription_ready.json"],
)
def test_every_sample_payload_is_accepted(sample: str) -> None:
    event = json.loads((SAMPLES / sample).read_text())
    file = ready_file(parse_event((SAMPLES / sample).read_bytes()))
    assert file is not None
    section = event.get("call_recording") or event["call_transcription"]
    assert (file.call_cid, file.filename, file.url) == (event["call_cid"], section["filename"], section["url"])
    assert file.session_id == section.get("session_id")
    assert file.end_time > file.start_time


def test_legacy_payloads_have_no_session_or_recording_type() -> None:
    file = ready_file(parse_event((SAMPLES / "call.recording_ready.legacy.json").read_bytes()))
    assert file is not None
    assert (file.session_id, file.recording_type, file.egress_id) == (None, None, None)


def test_other_event_types_are_ignored() -> None:
    assert ready_file(parse_event(b'{"type": "call.session_started", "call_cid": "a:b"}')) is None


def _recording(**changes: object) -> bytes:
    event = json.loads((SAMPLES / "call.recording_ready.json").read_text())
    for path, value in changes.items():
        target = event
        *parents, leaf = path.split("__")
        for p in parents:
            target = target[p]
        if value is None:
            target.pop(leaf)
        else:
            target[leaf] = value
    return json.dumps(event).encode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"call_cid": "a:b"}', "type"),
        (_recording(call_cid=None), "call_cid"),
        (_recording(call_cid="no-colon"), "call_cid"),
        (_recording(call_recording=None), "call_recording"),
        (_recording(call_recording__url=None), "call_recording.url"),
        (_recording(call_recording__filename=""), "call_recording.filename"),
        (_recording(call_recording__end_time=None), "call_recording.end_time"),
        (_recording(call_recording__start_time="soon"), "call_recording.start_time"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_malformed_payloads_are_refused_with_the_reason(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedPayload, match=reason.replace(".", r"\.")):
        ready_file(parse_event(body))
