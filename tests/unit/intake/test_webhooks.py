"""Webhook decoding, authentication and parsing (worker/intake/webhook.py)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from worker.errors import BadCredentials, MalformedPayload, PayloadTooLarge
from worker.intake.webhook import MAX_BODY, authenticate, decompress, parse_event, parse_timestamp, ready_file, sign

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
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


@pytest.mark.parametrize("encoding", ["gzip", "GZIP", None, "", "identity", "br"])
def test_a_gzip_body_is_inflated_whatever_content_encoding_says(encoding: str | None) -> None:
    """gzip is told by its first bytes (1f 8b), as Stream's SDKs do: a proxy may strip or change the header."""
    assert decompress(gzip.compress(b'{"a":1}'), encoding) == b'{"a":1}'


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "br", "deflate", None])
def test_a_plain_json_body_is_read_as_it_is_whatever_content_encoding_says(encoding: str | None) -> None:
    """A body something on the way already inflated, header kept: read as is, not refused as broken gzip."""
    assert decompress(b' {"a":1}', encoding) == b' {"a":1}'


def test_a_gzip_bomb_is_refused_without_inflating_it_all() -> None:
    bomb = gzip.compress(b"\0" * (50 * MAX_BODY))
    assert len(bomb) < MAX_BODY
    for encoding in ("gzip", None):
        with pytest.raises(PayloadTooLarge):
            decompress(bomb, encoding)


@pytest.mark.parametrize(
    ("body", "encoding", "reason"),
    [
        (b"\x1f\x8bnot gzip at all", None, "not valid gzip"),
        (b"\x1f\x8bnot gzip at all", "gzip", "not valid gzip"),
        (gzip.compress(b"x" * 1000)[:-10], "gzip", "truncated"),
        (gzip.compress(b"x" * 1000)[:-10], None, "truncated"),
        (gzip.compress(b"{}") + b"junk", None, "bytes follow"),
        (b"not gzip", "gzip", "neither gzip .* nor a JSON object"),
        (b"\x0b\x02\x80{}\x03", "br", "unsupported Content-Encoding 'br'"),
    ],
)
def test_broken_gzip_and_unknown_encodings_are_malformed_with_the_reason(
        body: bytes, encoding: str | None, reason: str) -> None:
    with pytest.raises(MalformedPayload, match=reason):
        decompress(body, encoding)


def test_plain_bodies_over_the_limit_are_too_large() -> None:
    for encoding in (None, "gzip"):
        with pytest.raises(PayloadTooLarge):
            decompress(b"{" + b" " * MAX_BODY, encoding)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-10-12T20:44:43.205Z", datetime(2025, 10, 12, 20, 44, 43, 205000, tzinfo=UTC)),
        ("2024-03-18T08:23:27.642688204Z", datetime(2024, 3, 18, 8, 23, 27, 642688, tzinfo=UTC)),
        ("2024-03-18T10:23:27+02:00", datetime(2024, 3, 18, 8, 23, 27, tzinfo=UTC)),
        ("2024-03-18T08:23:27Z", datetime(2024, 3, 18, 8, 23, 27, tzinfo=UTC)),
        ("2024-03-18T08:23:27.6Z", datetime(2024, 3, 18, 8, 23, 27, 600000, tzinfo=UTC)),
        (1760301883205000000, datetime(2025, 10, 12, 20, 44, 43, 205000, tzinfo=UTC)),
        (1760301883205000000.0, datetime(2025, 10, 12, 20, 44, 43, 205000, tzinfo=UTC)),
        (1.768250683205e18, datetime(2026, 1, 12, 20, 44, 43, 205000, tzinfo=UTC)),
        ("1768250683205000000", datetime(2026, 1, 12, 20, 44, 43, 205000, tzinfo=UTC)),
        (" 1768250683205000000 ", datetime(2026, 1, 12, 20, 44, 43, 205000, tzinfo=UTC)),
    ],
)
def test_timestamps_are_rfc3339_or_integer_float_or_numeric_string_nanoseconds(
        value: object, expected: datetime) -> None:
    assert parse_timestamp(value, "t") == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("yesterday", "not an RFC 3339 timestamp"),
        ("2024-03-18T08:23:27", "no time zone"),
        ("1.768e18", "not an RFC 3339 timestamp"),
        ("-1768250683205000000", "not an RFC 3339 timestamp"),
        ("1_768_250_683_205_000_000", "not an RFC 3339 timestamp"),
        ("\u0661\u0667\u0666\u0668\u0662\u0665\u0660\u0666\u0668\u0663\u0662\u0660\u0665\u0660\u0660\u0660"
         "\u0660\u0660\u0660", "not an RFC 3339 timestamp"),  # Arabic-Indic digits: int() takes them, we do not
        ("9" * 40, "not an RFC 3339 timestamp"),
        (True, "expected a timestamp, got True"),
        (None, "expected an RFC 3339 string or nanoseconds"),
        ([1768250683205000000], "expected an RFC 3339 string or nanoseconds"),
        (-1768250683205000000, "out of range"),
        (-1.5, "out of range"),
        (1.5, "out of range"),
        (1768250683205, "seconds, milliseconds or microseconds are not accepted"),  # milliseconds
        ("1768250683", "seconds, milliseconds or microseconds are not accepted"),  # seconds
        (10**30, "out of range"),
        ("9" * 30, "out of range"),
        (1e300, "out of range"),
        (float("nan"), "not a number of nanoseconds"),
        (float("inf"), "not a number of nanoseconds"),
        ("9999-12-31T23:59:59Z", "out of range"),
    ],
)
def test_bad_timestamps_are_malformed_with_the_reason(value: object, reason: str) -> None:
    with pytest.raises(MalformedPayload, match=f"^t: .*{reason}"):
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
