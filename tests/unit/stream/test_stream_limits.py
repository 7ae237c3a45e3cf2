"""Stream's rate limits (worker/stream/limits.py, worker/stream/client.py): real Redis, the fake Stream's limits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import API_KEY, API_SECRET
from tests.fakestream.server import FakeStream
from worker.errors import StreamRefused
from worker.monitoring.stats import Stats
from worker.runtime import Runtime
from worker.stream.client import StreamClient
from worker.stream.limits import SharedBudget, endpoint_of, rate_headers, retry_wait
from worker.transfer.refresh import fresh_url

GET_CALL = "GET /api/v2/video/call/{type}/{id}"


@pytest.fixture
def make_client(redis_url: str, fake: FakeStream) -> Iterator[Callable[..., StreamClient]]:
    """make_client(share=0.5, window=60.0) → a StreamClient with its own Redis connection (as another
    process would have) on one shared budget, counting into Stats."""
    made: list[tuple[StreamClient, redis.Redis]] = []

    def build(share: float = 0.5, window: float = 60.0) -> StreamClient:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        stream = StreamClient(fake.base_url, API_KEY, API_SECRET, timeout=5,
                              budget=SharedBudget(client, share, window=window), stats=Stats(client))
        made.append((stream, client))
        return stream

    yield build
    for stream, client in made:
        stream.close()
        client.close()


def stats(redis_url: str) -> Stats:
    return Stats(redis.Redis.from_url(redis_url, decode_responses=True))


# -- reading Stream's answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "endpoint"), [
    ("GET", "/api/v2/video/call/default/abc", GET_CALL),
    ("get", "/api/v2/video/call/a%2Fb/x%20y?api_key=k", GET_CALL),
    ("GET", "/api/v2/video/call/default/abc/recordings", "GET /api/v2/video/call/{type}/{id}/recordings"),
    ("DELETE", "/api/v2/video/call/default/abc/s1/transcriptions/t.jsonl",
     "DELETE /api/v2/video/call/{type}/{id}/{session}/transcriptions/{filename}"),
    ("GET", "/api/v2/video/call/default/abc/report?session_id=s1", "GET /api/v2/video/call/{type}/{id}/report"),
    ("POST", "/api/v2/video/calls", "POST /api/v2/video/calls"),
    ("GET", "/api/v2/rate_limits", "GET /api/v2/rate_limits"),
])
def test_an_endpoint_is_its_method_and_path_template(method: str, path: str, endpoint: str) -> None:
    """Requests for different calls count against one endpoint; unknown paths are their own."""
    assert endpoint_of(method, path) == endpoint


def test_rate_headers_take_the_first_of_comma_joined_values() -> None:
    """As the SDK reads them; all three must be there and numbers."""
    found = rate_headers({"x-ratelimit-limit": "60, 60", "x-ratelimit-remaining": " ,12", "x-ratelimit-reset": "17"})
    assert found is not None and (found.limit, found.remaining, found.reset) == (60, 12, 17.0)
    assert rate_headers({"x-ratelimit-limit": "60", "x-ratelimit-remaining": "1"}) is None
    assert rate_headers({"x-ratelimit-limit": "many", "x-ratelimit-remaining": "1", "x-ratelimit-reset": "9"}) is None


NOW = 1_800_000_000.0


@pytest.mark.parametrize(("headers", "wait"), [
    ({"retry-after": "7"}, 7.0),
    ({"retry-after": "7, 30", "x-ratelimit-reset": str(int(NOW) + 50)}, 7.0),
    ({"retry-after": formatdate(NOW + 12, usegmt=True)}, 12.0),
    ({"retry-after": f"{formatdate(NOW + 12, usegmt=True)}, {formatdate(NOW + 99, usegmt=True)}"}, 12.0),
    ({"retry-after": formatdate(NOW - 5, usegmt=True)}, 0.0),
    ({"x-ratelimit-reset": f"{int(NOW) + 20}, {int(NOW) + 80}"}, 20.0),
    ({"retry-after": "soon"}, None),
    ({}, None),
])
def test_a_429s_wait_comes_from_retry_after_or_the_reset(headers: dict[str, str], wait: float | None) -> None:
    """Retry-After in seconds or as an HTTP date, else X-RateLimit-Reset; the first of joined values."""
    assert retry_wait(headers, now=NOW) == wait


# -- the shared budget ------------------------------------------------------------------------------------------


def test_clients_together_never_spend_more_than_their_share_of_a_minute(
        make_client: Callable[..., StreamClient], fake: FakeStream, redis_url: str) -> None:
    """Two clients (own connections, as two processes) hammering GetCall with a limit of 60 a "minute"
    (6 s here, so a "second" is 0.1 s): together at most 30 in any minute and 1 in any second, none
    refused, and the budget is used up (the minute's 30 go before it ends)."""
    fake.add_call("default", "busy")
    fake.limit_api("GetCall", 60, window=6.0)
    clients = [make_client(window=6.0) for _ in range(2)]
    for client in clients:  # each opens its connection first: a connection's set-up is not the limiter's jitter
        client.list_files("default:busy", "recording")
    stop = time.monotonic() + 7.0

    def hammer(client: StreamClient) -> None:
        while time.monotonic() < stop:
            assert client.get_call("default", "busy") is not None

    threads = [threading.Thread(target=hammer, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rate = fake.api_rate("GetCall")
    assert rate.limited == 0 and rate.max_per_minute == 30 and rate.max_per_second == 1
    assert rate.requests >= 31
    assert stats(redis_url).pairs("stats:stream_requests")[(GET_CALL, "ok")] == rate.requests
    assert stats(redis_url).stream_waits()[GET_CALL] > 1


def test_a_small_per_second_share_spaces_requests_out(make_client: Callable[..., StreamClient],
                                                      fake: FakeStream) -> None:
    """A limit of 30 a minute allows 1 a second: half of it is one request every 2 seconds."""
    fake.add_call("default", "slow")
    fake.limit_api("GetCall", 30)
    client = make_client()
    started = time.monotonic()
    for _ in range(3):
        client.get_call("default", "slow")
    assert 3.8 < time.monotonic() - started < 6
    assert fake.api_rate("GetCall").limited == 0


def test_a_spent_minute_holds_every_client_until_the_reset(make_client: Callable[..., StreamClient],
                                                          fake: FakeStream) -> None:
    """X-RateLimit-Remaining 0 (the app's backend spent the minute): nobody sends before the reset."""
    fake.add_call("default", "spent")
    reset = int(time.time()) + 2
    first, second = make_client(), make_client()
    fake.fail_next_api("/video/call/default/none", 404, count=1,
                       headers={"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0",
                                "X-RateLimit-Reset": str(reset)})
    assert first.get_call("default", "none") is None
    assert second.get_call("default", "spent") is not None
    assert time.time() >= reset - 0.05


# -- 429s -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["seconds", "http-date", "reset"])
def test_a_429_is_waited_out_by_every_client_and_retried(
        make_client: Callable[..., StreamClient], fake: FakeStream, redis_url: str, style: str) -> None:
    """The 429's wait (Retry-After as seconds or an HTTP date, else X-RateLimit-Reset) holds this
    client and any other; the retry succeeds; the 429 counts as rate_limited, never as ok."""
    fake.add_call("default", "busy")
    until = int(time.time()) + 2
    headers = {"seconds": {"Retry-After": "2"}, "http-date": {"Retry-After": formatdate(until, usegmt=True)},
               "reset": {"X-RateLimit-Reset": f"{until}, {until + 30}"}}[style]
    fake.fail_next_api("/video/call/default/busy", 429, count=1, headers=headers)
    first, second = make_client(), make_client()
    started = time.time()
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(first.get_call("default", "busy")))
    worker.start()
    while not fake.api_requests:
        time.sleep(0.01)
    time.sleep(0.05)  # the 429 has been answered
    assert second.get_call("default", "busy") is not None
    second_done = time.time()
    worker.join()
    earliest = started + 2 if style == "seconds" else until
    assert result and result[0] is not None and second_done >= earliest - 0.05
    counts = stats(redis_url).pairs("stats:stream_requests")
    assert counts == {(GET_CALL, "rate_limited"): 1, (GET_CALL, "ok"): 2}
    assert stats(redis_url).stream_waits()[GET_CALL] >= 1.5


def test_without_rate_limit_headers_only_429s_slow_requests_down(
        make_client: Callable[..., StreamClient], fake: FakeStream, redis_url: str) -> None:
    """Answers without X-RateLimit-*: requests go as fast as they come until Stream says 429 (its
    per-second limit, 2 here), then wait it out; every request succeeds in the end."""
    fake.add_call("default", "bare")
    fake.rate_limit_headers = False
    fake.limit_api("GetCall", 60)
    client = make_client()
    for _ in range(5):
        assert client.get_call("default", "bare") is not None
    rate = fake.api_rate("GetCall")
    assert rate.limited >= 1 and rate.requests == 5 + rate.limited
    counts = stats(redis_url).pairs("stats:stream_requests")
    assert counts == {(GET_CALL, "ok"): 5, (GET_CALL, "rate_limited"): rate.limited}


# -- missing calls and files: 404 or 400 code 16 ---------------------------------------------------------------


@pytest.mark.parametrize("status", [404, 400])
def test_a_missing_call_is_gone_as_404_or_400_code_16(make_client: Callable[..., StreamClient], fake: FakeStream,
                                                     redis_url: str, status: int) -> None:
    """GetCall says None, ListRecordings refuses with `gone`, and the metrics count it as gone."""
    fake.missing_status = status
    client = make_client()
    assert client.get_call("default", "never") is None
    with pytest.raises(StreamRefused) as caught:
        client.list_files("default:never", "recording")
    assert caught.value.gone and (caught.value.status, caught.value.code) == (status, 16)
    counts = stats(redis_url).pairs("stats:stream_requests")
    assert counts[(GET_CALL, "gone")] == 1


def test_other_400s_are_not_gone(make_client: Callable[..., StreamClient], fake: FakeStream) -> None:
    fake.fail_next_api("/video/call/default/x", 400, count=1)
    with pytest.raises(StreamRefused) as caught:
        make_client().get_call("default", "x")
    assert not caught.value.gone


@pytest.mark.parametrize("status", [404, 400])
def test_a_fresh_url_for_a_call_stream_no_longer_has_is_none(make_settings: Any, fake: FakeStream, tmp_path: Path,
                                                            status: int) -> None:
    """worker/transfer/refresh.py treats both shapes of "does not exist" the same."""
    fake.missing_status = status
    settings = make_settings(env={"STREAM_BASE_URL": fake.base_url}, download_hosts=[fake.cdn_host],
                             storages=[{"name": "d", "storage_type": "local", "bucket": str(tmp_path)}])
    runtime = Runtime.from_settings(settings)
    try:
        assert fresh_url(runtime, {"kind": "recording", "call_cid": "default:gone", "filename": "a.mp4"}) is None
    finally:
        runtime.close()
