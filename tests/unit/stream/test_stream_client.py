"""Stream's REST client (worker/stream/client.py) against the fake Stream API (checked with Stream's SDK)."""

from __future__ import annotations

from collections.abc import Iterator

import jwt
import pytest

from tests.conftest import API_KEY, API_SECRET
from tests.fakestream.server import FakeStream
from worker.errors import StreamRefused, StreamUnavailable
from worker.stream.client import StreamClient


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def client(fake: FakeStream, waits: list[float]) -> Iterator[StreamClient]:
    stream = StreamClient(fake.base_url, API_KEY, API_SECRET, timeout=5, sleep=waits.append)
    yield stream
    stream.close()


def test_get_call_returns_the_call_with_its_custom_data(client: StreamClient, fake: FakeStream) -> None:
    fake.add_call("default", "c1", custom={"archive_storage": "legal-hold"})
    call = client.get_call("default", "c1")
    assert call is not None and call["cid"] == "default:c1"
    assert call["custom"] == {"archive_storage": "legal-hold"}


def test_requests_carry_stream_server_auth(client: StreamClient, fake: FakeStream) -> None:
    fake.add_call("default", "c2")
    client.get_call("default", "c2")
    request = fake.api_requests[-1]
    assert request.query["api_key"] == API_KEY
    assert not request.headers["authorization"].startswith("Bearer")
    assert jwt.decode(request.headers["authorization"], API_SECRET, algorithms=["HS256"]) == {"server": True}
    assert request.headers["stream-auth-type"] == "jwt"
    assert request.headers["x-stream-client"].startswith("stream-archiver-")


def test_an_unknown_call_is_none(client: StreamClient) -> None:
    assert client.get_call("default", "never-made") is None


def test_odd_ids_are_escaped_in_the_path(client: StreamClient, fake: FakeStream) -> None:
    fake.add_call("default", "a b/c")
    call = client.get_call("default", "a b/c")
    assert call is not None and call["id"] == "a b/c"


def test_server_errors_are_retried_with_backoff(client: StreamClient, fake: FakeStream, waits: list[float]) -> None:
    fake.add_call("default", "flaky")
    fake.fail_next_api("/video/call/default/flaky", 503, count=2)
    assert client.get_call("default", "flaky") is not None
    assert len(waits) == 2 and all(w > 0 for w in waits)


def test_a_rate_limit_waits_and_goes_on(client: StreamClient, fake: FakeStream, waits: list[float]) -> None:
    fake.add_call("default", "busy")
    fake.fail_next_api("/video/call/default/busy", 429, count=1)
    assert client.get_call("default", "busy") is not None
    assert waits and waits[0] >= 0.1


def test_a_persistent_outage_raises_unavailable_with_streams_code(client: StreamClient, fake: FakeStream) -> None:
    fake.fail_next_api("/video/call/default/down", 500, count=10)
    with pytest.raises(StreamUnavailable, match=r"answered 500 \(code -?\d+\): injected failure") as caught:
        client.get_call("default", "down")
    assert caught.value.status == 500


def test_bad_credentials_are_refused_at_once(fake: FakeStream, waits: list[float]) -> None:
    wrong = StreamClient(fake.base_url, API_KEY, "another-secret-that-is-long-enough-0123456789", sleep=waits.append)
    try:
        with pytest.raises(StreamRefused, match="answered 401") as caught:
            wrong.get_call("default", "x")
    finally:
        wrong.close()
    assert caught.value.code is not None and waits == []


def test_transport_errors_are_unavailable(waits: list[float]) -> None:
    closed = StreamClient("http://127.0.0.1:1", API_KEY, API_SECRET, timeout=1, sleep=waits.append)
    try:
        with pytest.raises(StreamUnavailable, match=r"^cannot reach Stream's API at http://127\.0\.0\.1:1: "
                                                    r"connection refused \(GET /api/v2/video/call/default/x\)$"):
            closed.get_call("default", "x")
    finally:
        closed.close()
    assert len(waits) == 3


def test_a_short_secret_signs_without_a_warning_on_each_call(fake: FakeStream) -> None:
    """PyJWT's InsecureKeyLengthWarning never shows on API calls (warnings are errors here); the
    settings give the advice once instead (Environment.signing_secret_advice)."""
    short = StreamClient(fake.base_url, API_KEY, "short", sleep=lambda _: None)
    try:
        with pytest.raises(StreamRefused):  # the fake knows another secret: what matters is no warning
            short.get_call("default", "x")
    finally:
        short.close()
