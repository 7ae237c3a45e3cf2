"""Parallel ranged downloads and kept connections (worker/transfer/ranged.py, pool.py, download.py), run
in-process: real Redis, local disk, the fake Stream's CDN (ranges, cuts, a CDN without ranges) and a small
origin of our own for the address guard."""

from __future__ import annotations

import ipaddress
import os
import threading
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.fakestream.models import StoredFile
from tests.fakestream.server import FakeStream
from worker.intake.record import record_routes
from worker.intake.webhook import ready_file
from worker.runtime import Runtime
from worker.transfer.download import http_client, open_download
from worker.transfer.run import run_transfer

MiB = 1024 * 1024
RANGE = 5 * MiB  # part_size, the range size (S3's minimum part size is the smallest allowed)
TUNING = {"part_size": "5MiB", "parallel_download_threshold": "1MiB", "download_streams": 3,
          "parallel_download_max_rate": "1TiB"}  # loopback is fast: ranges anyway


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return tmp_path / "archive"


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime], archive: Path) -> Runtime:
    return make_runtime({"name": "disk", "storage_type": "local", "bucket": str(archive)}, transfer=TUNING)


def archived(runtime: Runtime, fake: FakeStream, archive: Path, file: StoredFile) -> bytes:
    """Record `file` as its webhook would, run its transfer, and return the bytes stored."""
    return (archive / archive_key(runtime, fake, file)).read_bytes()


def archive_key(runtime: Runtime, fake: FakeStream, file: StoredFile) -> str:
    """Record `file` as its webhook would, run its transfer (archived in one attempt), and return its key."""
    stream_file = ready_file(fake.event_for(file))
    assert stream_file is not None
    (tid,) = record_routes(runtime.archive, runtime.ledger, stream_file).transfer_ids
    assert run_transfer(runtime, tid) == "archived"
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and transfer.attempts == 1 and transfer.sha256 == file.sha256
    assert not [t for t in threading.enumerate() if t.name.startswith("download-range")]  # every stream joined
    return transfer.key


def ranges(fake: FakeStream, file: StoredFile) -> list[str]:
    """The Range header of every CDN GET of `file` ("" for none), in the order they arrived."""
    return [h.get("range", "") for method, path, h in fake.cdn_requests if method == "GET" and file.filename in path]


def test_a_large_file_is_fetched_in_ranges_and_stored_byte_identical(runtime: Runtime, fake: FakeStream,
                                                                      archive: Path) -> None:
    """23 MiB over 3 streams: a plain GET (its first 5 MiB timed, then the first range of the feed read from it),
    then every other range once."""
    file = fake.add_recording("default:big", os.urandom(4 * RANGE + 3 * MiB))
    assert archived(runtime, fake, archive, file) == file.read_bytes()
    asked = ranges(fake, file)
    assert asked[0] == ""
    assert sorted(asked[1:]) == sorted(f"bytes={start}-{min(start + RANGE, file.size) - 1}"
                                       for start in range(2 * RANGE, file.size, RANGE))


def test_a_file_under_the_threshold_is_one_plain_get(make_runtime: Callable[..., Runtime], fake: FakeStream,
                                                     archive: Path) -> None:
    runtime = make_runtime({"name": "disk", "storage_type": "local", "bucket": str(archive)},
                           transfer={**TUNING, "parallel_download_threshold": "64MiB"})
    file = fake.add_recording("default:medium", os.urandom(3 * RANGE))
    assert archived(runtime, fake, archive, file) == file.read_bytes()
    assert ranges(fake, file) == [""]


@pytest.mark.parametrize("cut_from", [None, 2 * RANGE, 3 * RANGE], ids=["first-answer", "first-range", "second-range"])
def test_a_stream_cut_mid_range_is_resumed_on_its_own(runtime: Runtime, fake: FakeStream, archive: Path,
                                                      cut_from: int | None) -> None:
    """One stream's answer ends 1 MiB + 7 bytes into its range: only the rest of that range is asked for again.
    The first answer cut while it is timed: the ranges start where it broke (a cut is no proof of speed)."""
    file = fake.add_recording("default:cut", os.urandom(4 * RANGE + 11))
    fake.truncate_next(file.filename, after_bytes=MiB + 7, range_from=cut_from)
    assert archived(runtime, fake, archive, file) == file.read_bytes()
    start, end = (cut_from, cut_from + RANGE) if cut_from else (0, MiB + 7 + RANGE)
    assert f"bytes={start + MiB + 7}-{end - 1}" in ranges(fake, file)
    assert len(ranges(fake, file)) == 5  # the first answer, 3 ranges, the resumed rest


def test_a_source_refusing_ranges_is_read_over_one_stream(runtime: Runtime, fake: FakeStream, archive: Path) -> None:
    """The CDN answers the second range with the whole file (200): closed, and the first answer serves it all."""
    fake.cdn_ignores_range = True
    file = fake.add_recording("default:noranges", os.urandom(3 * RANGE + 5))
    assert archived(runtime, fake, archive, file) == file.read_bytes()
    assert ranges(fake, file) == ["", f"bytes={2 * RANGE}-{3 * RANGE - 1}"]


def test_a_stream_that_fails_stops_the_others_and_stores_nothing(runtime: Runtime, fake: FakeStream,
                                                                  archive: Path) -> None:
    """The fifth range answers 503: the transfer is retried later, no stream is left running, no object stored."""
    file = fake.add_recording("default:fails", os.urandom(6 * RANGE))
    fake.fail_next(file.filename, 503, range_from=4 * RANGE)  # a 5xx is not a cut: no resume in this attempt
    stream_file = ready_file(fake.event_for(file))
    assert stream_file is not None
    (tid,) = record_routes(runtime.archive, runtime.ledger, stream_file).transfer_ids
    assert run_transfer(runtime, tid) == "retry"
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and transfer.state == "queued" and "503" in transfer.error
    assert not [t for t in threading.enumerate() if t.name.startswith("download-range")]
    assert not [p for p in archive.rglob("*") if p.is_file()]


def test_memory_stays_bounded_by_streams_times_range(runtime: Runtime, fake: FakeStream, archive: Path) -> None:
    """48 MiB through 3 streams holds at most 3 ranges (plus a few chunks) in memory, never the file."""
    file = fake.add_recording("default:bounded", os.urandom(48 * MiB))
    tracemalloc.start()
    try:
        key = archive_key(runtime, fake, file)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (archive / key).read_bytes() == file.read_bytes()
    # per stream a range and the chunk it is reading; the hasher's 4 waiting chunks; one more in hand
    assert peak < 3 * (RANGE + MiB) + 5 * MiB, f"peak {peak / MiB:.1f} MiB"


def test_small_files_from_one_host_share_one_connection(runtime: Runtime, fake: FakeStream, archive: Path) -> None:
    """Ten small downloads in a row: one TCP connection to the CDN, kept between them."""
    before = fake.cdn_connections
    files = [fake.add_recording(f"default:small-{n}", os.urandom(2000 + n)) for n in range(10)]
    for file in files:
        assert archived(runtime, fake, archive, file) == file.read_bytes()
    assert fake.cdn_connections - before == 1


def test_a_parallel_download_opens_no_more_connections_than_streams(runtime: Runtime, fake: FakeStream,
                                                                    archive: Path) -> None:
    """The first answer's connection is dropped after its range; the streams' connections are kept for the next."""
    before = fake.cdn_connections
    big = fake.add_recording("default:big-then-small", os.urandom(6 * RANGE))
    assert archived(runtime, fake, archive, big) == big.read_bytes()
    after_big = fake.cdn_connections - before
    assert after_big <= 1 + 3
    small = [fake.add_recording(f"default:then-{n}", os.urandom(1000)) for n in range(4)]
    for file in small:
        assert archived(runtime, fake, archive, file) == file.read_bytes()
    assert fake.cdn_connections - before == after_big


# -- the address guard on every stream -------------------------------------------------------------------------

class RangeRedirector:
    """A loopback origin serving `body`: a plain GET gets it all (200), a range request a 302 to `location`."""

    def __init__(self, body: bytes, location: str) -> None:
        self.requests: list[str] = []  # the Range header of each request
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                origin.requests.append(self.headers.get("range", ""))
                if self.headers.get("range"):
                    self.send_response(302)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except ConnectionError:
                    pass  # the client reads only its first range

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def names(table: dict[str, str]) -> Callable[[str, int], Sequence[str]]:
    """A resolver from a table of names; IP literals resolve to themselves."""

    def resolve(host: str, port: int) -> Sequence[str]:
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            return [table[host]]

    return resolve


@pytest.fixture
def redirector(request: pytest.FixtureRequest) -> Iterator[RangeRedirector]:
    origin = RangeRedirector(os.urandom(3 * RANGE), request.param)
    yield origin
    origin.close()


@pytest.mark.parametrize("redirector", ["https://evil.stream-io-cdn.com/rec.mp4", "http://169.254.169.254/latest/"],
                         indirect=True, ids=["cdn-name-resolving-to-loopback", "metadata-address"])
def test_the_address_guard_refuses_a_range_sent_inside(runtime: Runtime, fake: FakeStream, archive: Path,
                                                       redirector: RangeRedirector) -> None:
    """The first answer comes from an allowed host; the second range is redirected to a CDN name resolving
    to 127.0.0.1 (refused when connecting) or to the metadata address (refused as a URL): the transfer
    fails as refused, nothing is stored, no stream is left running."""
    runtime.http = http_client([redirector.host, "*.stream-io-cdn.com"], 2.0, 5.0,
                               resolve=names({"evil.stream-io-cdn.com": "127.0.0.1"}))
    file = fake.add_recording("default:ssrf", b"x")
    stream_file = ready_file(fake.event_for(file, url=f"http://{redirector.host}/rec.mp4?Signature=s3cr3t"))
    assert stream_file is not None
    (tid,) = record_routes(runtime.archive, runtime.ledger, stream_file).transfer_ids
    assert run_transfer(runtime, tid) == "failed"
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and transfer.reason == "DownloadRefused"
    assert ("evil.stream-io-cdn.com:443 resolves to 127.0.0.1, a loopback address" in transfer.error
            or "169.254.169.254/latest/ is not on an allowed download host" in transfer.error)
    assert redirector.requests == ["", f"bytes={2 * RANGE}-{3 * RANGE - 1}"]
    assert not [p for p in archive.rglob("*") if p.is_file()]
    assert not [t for t in threading.enumerate() if t.name.startswith("download-range")]


class SilentCloser:
    """A loopback origin that answers 200 over HTTP/1.1 keep-alive, then closes the connection without
    saying so (as servers do with idle connections): a kept connection to it is dead."""

    def __init__(self) -> None:
        self.connections = 0
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                origin.connections += 1

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self.send_response(200)
                self.send_header("Content-Length", "5")
                self.end_headers()
                self.wfile.write(b"hello")
                self.close_connection = True

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_a_kept_connection_the_server_closed_is_replaced() -> None:
    """Each kept connection is found closed (before reuse, or as the request goes out): a new one is opened,
    and no download fails."""
    origin = SilentCloser()
    try:
        with http_client([origin.host], 2.0, 5.0) as http:
            for _ in range(5):
                with open_download(http, f"http://{origin.host}/x", MiB) as download:
                    assert b"".join(download.chunks()) == b"hello"
        assert origin.connections == 5
    finally:
        origin.server.shutdown()
        origin.server.server_close()


def test_a_file_less_than_a_range_longer_than_the_timed_part_is_one_plain_get(runtime: Runtime, fake: FakeStream,
                                                                             archive: Path) -> None:
    """Past its timed first range the file has less than one range left: the first answer brings it all, no
    range is asked for (a range past the file's end would be)."""
    file = fake.add_recording("default:just-over", os.urandom(RANGE + MiB // 2))
    assert archived(runtime, fake, archive, file) == file.read_bytes()
    assert ranges(fake, file) == [""]
