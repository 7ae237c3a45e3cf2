"""Hostile HTTP against the real receiver (worker/edge/web/app.py under uvicorn, a real Redis ledger): random bodies and
headers never give a 5xx, and nothing is recorded or queued without a valid signature."""

from __future__ import annotations

import gzip
import json
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from schemathesis.checks import content_type_conformance, not_a_server_error, status_code_conformance

from config import load_settings
from tests.conftest import API_KEY, API_SECRET
from tests.support.samples import stream_time
from tests.unit.conftest import Receiver
from worker.edge.web import paths
from worker.edge.web.app import create_app
from worker.intake.webhook import MAX_BODY, sign
from worker.ledger.connection import connect
from worker.ledger.store import Ledger

REQUEST_LINE = f"POST {paths.WEBHOOK} HTTP/1.1\r\n".encode()  # the raw-socket cases' start

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


# -- what hypothesis sends -------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
timestamps = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.text(max_size=40), json_values,
    st.sampled_from(["2026-11-27T10:00:00Z", "2026-11-27T10:00:00.123456789Z", "0001-01-01T00:00:00+01:00",
                     "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59Z", "2026-11-27T10:00:00",
                     "1970-01-01T00:00:00Z"]),
)
names = st.one_of(st.text(max_size=40), json_values,
                  st.sampled_from(["../../etc/passwd", "\ud800", "a\0b", "x" * 5000]))


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """Event-shaped JSON: Stream's event types with fields of any type, any value."""
    kind = draw(st.sampled_from(["call.recording_ready", "call.transcription_ready", "call.recording_failed",
                                 "call.transcription_failed", "call.session_started"]) | st.text(max_size=20))
    section = "call_transcription" if "transcription" in kind else "call_recording"
    item = draw(st.fixed_dictionaries({}, optional={
        "filename": names, "url": names, "start_time": timestamps, "end_time": timestamps,
        "session_id": names, "recording_type": names}))
    event = draw(st.fixed_dictionaries({"type": st.just(kind) | json_values}, optional={
        "call_cid": st.one_of(names, st.text(max_size=10).map(lambda s: f"default:{s}")), section: st.just(item)
        | json_values, "egress_id": json_values, "error": json_values, "created_at": timestamps}))
    return event


def deeply_nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


hostile_json = st.one_of(
    events().map(lambda e: json.dumps(e).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([deeply_nested(5_000), b'{"type": "x", "n": ' + b"9" * 5_000 + b"}", b'{"type": "\\ud800"}',
                     b'{"type": "call.recording_ready", "call_cid": "a:\\udfff"}', b"NaN", b'{"type": 1e999}',
                     b'\xef\xbb\xbf{"type": "x"}', b'{"type": "x"}' + b" " * 1000,
                     '{"type": "\u00fc"}'.encode("utf-16")]),
)
bodies = st.one_of(hostile_json, st.binary(max_size=2048))


def header_values() -> st.SearchStrategy[str]:
    """Header text HTTP can carry (latin-1, no CR/LF; the edges' spaces are not part of a value), odd
    lengths, cases and shapes."""
    latin = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80)
    return st.one_of(latin, st.text("0123456789abcdefABCDEF", max_size=130), st.just("")).map(str.strip)


# -- without a valid signature: nothing, ever ----------------------------------------------------------------

@FUZZ
@given(body=bodies, compress=st.booleans(), key=st.none() | st.just(API_KEY) | header_values(),
       signature=st.none() | header_values() | st.sampled_from(["upper", "other-secret", "truncated", "padded"]),
       encoding=st.none() | st.sampled_from(["gzip", "GZIP", "gZiP", "deflate", "br", "gzip, gzip", "identity",
                                             "x-gzip", "\xe9"]),
       extra=st.dictionaries(st.sampled_from(["X-Webhook-Id", "X-Webhook-Attempt", "Content-Type"]), header_values(),
                             max_size=3))
@example(body=b"{}", compress=False, key=API_KEY, signature="upper", encoding=None, extra={})
@example(body=b"{}", compress=False, key=API_KEY, signature="padded", encoding=None, extra={})
def test_unsigned_requests_never_record_anything(
    receiver: Receiver, body: bytes, compress: bool, key: str | None, signature: str | None, encoding: str | None,
    extra: dict[str, str],
) -> None:
    """Any body, any headers, no valid (key, signature) pair: 400/401/413, nothing written, nothing queued."""
    good = sign(body, API_SECRET)
    derived = {"upper": good.upper(), "other-secret": sign(body, "another-secret"), "truncated": good[:-1],
               "padded": good + "0"}
    signature = derived.get(signature or "", signature)
    if key == API_KEY and signature is not None and signature.strip().lower() == good:
        signature = sign(body, "another-secret")  # this test is about requests without a valid signature
    headers: dict[str, Any] = {name: value.encode("latin-1") for name, value in extra.items()}
    if key is not None:
        headers["X-Api-Key"] = key.encode("latin-1")
    if signature is not None:
        headers["X-Signature"] = signature.encode("latin-1")
    sent = gzip.compress(body) if compress else body
    if encoding is not None or compress:
        headers["Content-Encoding"] = (encoding or "gzip").encode("latin-1")
    response = receiver.send(sent, headers)
    assert response.status_code in (400, 401, 413), response.text
    assert receiver.recorded() == 0 and receiver.queued == []


# -- with a valid signature: a reason or an answer, never a 5xx ------------------------------------------------

@FUZZ
@given(body=hostile_json, compress=st.booleans())
@example(body=deeply_nested(5_000), compress=False)
@example(body=b'{"type": "x", "n": ' + b"9" * 5_000 + b"}", compress=False)
@example(body=json.dumps({"type": "call.recording_ready", "call_cid": "a:b", "call_recording": {
    "filename": "\ud800.mp4", "url": "https://x", "start_time": "2026-11-27T10:00:00Z",
    "end_time": "2026-11-27T10:00:01Z"}}).encode(), compress=False)
@example(body=json.dumps({"type": "call.recording_ready", "call_cid": "a:b", "call_recording": {
    "filename": "r.mp4", "url": "https://x", "start_time": "0001-01-01T00:00:00+01:00",
    "end_time": "9999-12-31T23:59:59Z"}}).encode(), compress=False)
@example(body=json.dumps({"type": "call.recording_failed", "call_cid": {"a": 1}}).encode(), compress=False)
def test_signed_random_json_gets_an_answer_never_a_5xx(receiver: Receiver, body: bytes, compress: bool) -> None:
    """Signed, any JSON: 202/200, or 400 with a reason and nothing written or queued."""
    before, queued = receiver.recorded(), list(receiver.queued)
    headers = {"X-Api-Key": API_KEY, "X-Signature": sign(body, API_SECRET), "X-Webhook-Id": "wh-fuzz"}
    if compress:
        headers["Content-Encoding"] = "gzip"
    response = receiver.send(gzip.compress(body) if compress else body, headers)
    assert response.status_code in (200, 202, 400, 413), response.text
    if response.status_code == 400:
        assert response.json()["error"]
    if response.status_code in (400, 413) or response.json().get("status") == "ignored":
        time.sleep(0.01)  # a background enqueue would have run by now
        assert receiver.recorded() == before and receiver.queued == queued


# -- body limits ----------------------------------------------------------------------------------------------

def signed_headers(body: bytes, **extra: str) -> dict[str, str]:
    return {"X-Api-Key": API_KEY, "X-Signature": sign(body, API_SECRET), **extra}


def test_bodies_over_the_limit_are_413_plain_gzip_and_bombs(receiver: Receiver) -> None:
    """Over 1 MiB as sent, as sent gzipped, or once gunzipped: 413, nothing written (signed or not)."""
    big = b'{"type": "x", "pad": "' + b"x" * MAX_BODY + b'"}'
    noise = gzip.compress(bytes(range(256)) * (MAX_BODY // 128), compresslevel=0)  # > 1 MiB compressed
    for body, sent, encoding in [(big, big, None), (big, gzip.compress(big), "gzip"), (noise, noise, "gzip")]:
        headers = signed_headers(body) | ({"Content-Encoding": encoding} if encoding else {})
        assert receiver.send(sent, headers).status_code == 413
    assert receiver.recorded() == 0 and receiver.queued == []


def raw_exchange(receiver: Receiver, head: bytes, chunks: Iterator[bytes], limit: int) -> tuple[bytes, int]:
    """Send `head` then `chunks` until the server answers (or `limit` bytes went); (answer, bytes sent)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=10) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        for chunk in chunks:
            if sent >= limit or _answered(sock):
                break
            try:
                sock.sendall(chunk)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                break  # the server stopped reading: it will not take the rest
            sent += len(chunk)
        sock.setblocking(True)
        try:
            answer = sock.recv(65536)
        except ConnectionResetError:
            answer = b""
    return answer, sent


def _answered(sock: socket.socket) -> bool:
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False


def test_a_chunked_body_without_length_is_cut_off_at_the_limit(receiver: Receiver) -> None:
    """No Content-Length, chunks forever: 413 long before the sender stops (not read whole into memory)."""
    head = (REQUEST_LINE + b"Host: x\r\nTransfer-Encoding: chunked\r\n"
            b"X-Api-Key: " + API_KEY.encode() + b"\r\nX-Signature: 00\r\n\r\n")
    piece = b"x" * 65536
    chunk = b"%x\r\n%s\r\n" % (len(piece), piece)
    answer, sent = raw_exchange(receiver, head, iter(lambda: chunk, b""), limit=64 * MAX_BODY)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 64 * MAX_BODY
    assert receiver.recorded() == 0


def test_a_declared_length_over_the_limit_is_refused_before_the_body(receiver: Receiver) -> None:
    """Content-Length: 1 GiB is refused from the header alone."""
    head = (REQUEST_LINE + b"Host: x\r\nContent-Length: 1073741824\r\n"
            b"X-Api-Key: " + API_KEY.encode() + b"\r\n\r\n")
    answer, _ = raw_exchange(receiver, head, iter([b"{}"]), limit=0)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


@pytest.mark.parametrize(
    "head",
    [b"Content-Length: 10\r\n\r\n{}",  # a lie: fewer bytes than declared, then the client goes away
     b"Content-Length: 2\r\n\r\n{}GARBAGE / HTTP/1.1\r\n\r\n",  # fewer declared than sent
     b"Content-Length: -1\r\n\r\n{}", b"Content-Length: abc\r\n\r\n{}",
     b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
     b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"],
)
def test_lying_framing_headers_never_give_a_5xx(receiver: Receiver, head: bytes) -> None:
    """Content-Length lies, duplicates and broken chunking: a 4xx or a closed connection, nothing written."""
    request = REQUEST_LINE + b"Host: x\r\nX-Api-Key: " + API_KEY.encode() + b"\r\n" + head
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=3) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        try:
            answer = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            answer = b""
    assert not answer.startswith(b"HTTP/1.1 5"), answer[:200]
    assert receiver.recorded() == 0


# -- replays -------------------------------------------------------------------------------------------------

def test_a_replayed_delivery_is_known_and_queued_once(receiver: Receiver) -> None:
    """The same X-Webhook-Id and body again (Stream's retry, or a captured request replayed): 200 known, one
    transfer, queued once."""
    event = {"type": "call.recording_ready", "call_cid": "default:replay", "call_recording": {
        "filename": "rec.mp4", "url": "https://ohio.stream-io-cdn.com/rec.mp4?Signature=x",
        "start_time": stream_time(timedelta(minutes=10)), "end_time": stream_time(timedelta(minutes=5))}}
    body = json.dumps(event).encode()
    first = receiver.send(body, signed_headers(body, **{"X-Webhook-Id": "wh-1", "X-Webhook-Attempt": "1"}))
    assert first.status_code == 202
    for attempt in range(2, 5):
        again = receiver.send(body, signed_headers(body, **{"X-Webhook-Id": "wh-1", "X-Webhook-Attempt": str(attempt)}))
        assert (again.status_code, again.json()["status"]) == (200, "known")
        assert again.json()["transfers"] == first.json()["transfers"]
    time.sleep(0.1)
    assert receiver.queued == first.json()["transfers"] and len(receiver.ledger.ids()) == 1


# -- schemathesis over the app's own OpenAPI ------------------------------------------------------------------

def _schema() -> Any:
    settings_ = load_settings({"STREAM_API_KEY": API_KEY, "STREAM_API_SECRET": API_SECRET})
    app = create_app(settings_, Ledger(connect("redis://127.0.0.1:1/0")), lambda ids: None)
    return schemathesis.openapi.from_dict(app.openapi())


schema = _schema()


@pytest.fixture
def served(receiver: Receiver) -> str:
    return receiver.base


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_openapi_schema_holds_and_nothing_fails(case: Any, receiver: Receiver) -> None:
    """schemathesis over every operation: no 5xx, only documented statuses and content types; unsigned
    webhook deliveries write nothing."""
    response = case.call(base_url=receiver.base)
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance, content_type_conformance])
    assert receiver.recorded() == 0 and receiver.queued == []
