"""The fake CDN's knobs for a CDN far away (bench/cdn_latency.py): a wait before the first byte of every
answer, a wait more before the first answer of each connection, a cap per connection on the body's rate,
and ``Connection: close`` on every answer.

Each knob is checked by what it must at least cost (a lower bound, never an upper one) or by what a
keep-alive client sees; the bytes stay the same."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.fakestream.server import FakeStream

MiB = 1 << 20


def test_first_byte_delay_comes_before_every_answer_heads_and_errors_too(fake: FakeStream) -> None:
    url = fake.signed_url(fake.add_recording("default:far", b"x" * 1000))
    fake.cdn_first_byte_delay = 0.15
    with httpx.Client(timeout=10) as http:
        requests: list[Callable[[], httpx.Response]] = [
            lambda: http.get(url), lambda: http.head(url), lambda: http.get(url + "0")]  # the last: a bad signature
        for request in requests:
            started = time.monotonic()
            answer = request()
            assert time.monotonic() - started >= 0.15
            assert answer.status_code in (200, 403)
    fake.cdn_first_byte_delay = 0
    with httpx.Client(timeout=10) as http:
        assert http.get(url).content == b"x" * 1000


def test_handshake_delay_comes_before_the_first_answer_of_each_connection_only(fake: FakeStream) -> None:
    url = fake.signed_url(fake.add_recording("default:far", b"z" * 10))
    fake.cdn_handshake_delay = 0.3
    with httpx.Client(timeout=10) as http:
        started = time.monotonic()
        http.get(url)
        first = time.monotonic() - started
        started = time.monotonic()
        assert http.get(url).content == b"z" * 10  # the same connection: no handshake again
        again = time.monotonic() - started
    assert first >= 0.3 and again < first
    fake.cdn_closes_connections = True
    with httpx.Client(timeout=10) as http:
        http.get(url)
        started = time.monotonic()
        http.get(url)  # a new connection each time
        assert time.monotonic() - started >= 0.3


def test_rate_caps_each_connection_from_bytes_and_from_disk(fake: FakeStream, tmp_path: Path) -> None:
    data = os.urandom(MiB + 12345)
    on_disk = tmp_path / "rec.mp4"
    on_disk.write_bytes(data)
    fake.cdn_rate = 4 * MiB  # 1 MiB + a bit: at least a quarter of a second
    with httpx.Client(timeout=10) as http:
        for stored in (fake.add_recording("default:far", data), fake.add_recording("default:disk", on_disk)):
            started = time.monotonic()
            body = http.get(fake.signed_url(stored)).content
            assert time.monotonic() - started >= len(data) / (4 * MiB)
            assert body == data
        ranged = http.get(fake.signed_url(stored), headers={"Range": f"bytes={MiB}-"})
        assert ranged.status_code == 206 and ranged.content == data[MiB:]


def test_close_connections_gives_one_connection_per_request(fake: FakeStream) -> None:
    url = fake.signed_url(fake.add_recording("default:far", b"y" * 100))
    with httpx.Client(timeout=10) as http:
        before = fake.cdn_connections
        for _ in range(3):
            assert http.get(url).content == b"y" * 100
        assert fake.cdn_connections - before == 1  # kept by default
        fake.cdn_closes_connections = True
        before = fake.cdn_connections
        for _ in range(3):
            answer = http.get(url)
            assert answer.headers["connection"] == "close" and answer.content == b"y" * 100
        assert fake.cdn_connections - before == 2  # the first went on the kept one, and closed it
