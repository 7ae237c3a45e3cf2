"""Downloading a file from Stream's signed URL: only from allowed hosts, streamed, checked.

The URL is a credential: it is never logged or put into an error message with its query string.
A download may start part-way (``offset``): it then asks for ``Range: bytes=N-`` (with
``If-Range: <ETag>`` when one is known) and accepts a 206 only when its ``Content-Range`` starts
at N; a 200 is the whole file again (the server ignored the range, or the file changed), and
`Download.start` is then 0 so the caller can tell.

A download may also be one byte range (``end``): ``Range: bytes=N-M``, for the parallel ranged
download of a large file (`worker.transfer.ranged`).

Every URL and redirect is checked, and every new connection opened, by `worker.transfer.url_guard`
(only `download_hosts`, never inside the network unless listed exactly, or a one-file permission).
Connections whose answer was read to the end are kept for the next request to the same scheme, host
and port (`worker.transfer.pool`).
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from urllib.parse import urljoin

import certifi
import httpx

from config.logging import redact_url, scrub
from worker.errors import IncompleteDownload, SourceMissing, SourceUnavailable, UrlRefused
from worker.transfer.pool import ConnectionPool, PoolKey
from worker.transfer.url_guard import DEFAULT_PORTS, AddressGuard, Permits, Resolver, check_url, resolve_host

MISSING_STATUSES = frozenset({401, 403, 404, 410})
REFUSED_STATUSES = frozenset({401, 403, 410})  # the signature no longer grants the file: a fresh URL may
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HEADERS = {"Accept-Encoding": "identity", "User-Agent": "stream-archiver"}
MAX_REDIRECTS = 5
# A kept connection the server closed as it was reused fails like this before any answer: sent again, once,
# on a new connection (GET and HEAD are safe to repeat).
_STALE = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, http.client.BadStatusLine)


class _GuardedHTTP(http.client.HTTPConnection):
    """http.client's connection, connecting through the guard (set `guard`, `connect_timeout` and
    `permitted`)."""

    guard: AddressGuard
    connect_timeout: float
    permitted: bool = False

    def connect(self) -> None:
        self.sock = self.guard.connect(self.host, self.port, self.connect_timeout, permitted=self.permitted)
        self.sock.settimeout(self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _GuardedHTTPS(http.client.HTTPSConnection, _GuardedHTTP):
    """TLS over the guarded connection (SNI and certificate checked for the URL's host name)."""


class DownloadClient:
    """GET and HEAD of download URLs with http.client: every URL and redirect checked (`check_url`),
    every new connection opened by the guard, no environment proxy, no content decoding. http.client
    reads a body straight into each chunk (one copy), where httpx's h11 path copied it four times:
    a third of the worker's CPU per GiB (bench/). Thread-safe: a connection serves one request at a
    time, then goes back to the pool (`keep_alive` idle connections per host at most)."""

    def __init__(self, patterns: Sequence[str], connect_timeout: float, read_timeout: float, *,
                 resolve: Resolver = resolve_host, permits: Permits | None = None, keep_alive: int = 4) -> None:
        self.patterns = tuple(patterns)
        self._permits = permits
        self._guard = AddressGuard(patterns, resolve)
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._tls = ssl.create_default_context(cafile=certifi.where())
        self._pool = ConnectionPool(keep_alive)

    def __enter__(self) -> DownloadClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the kept connections (downloads still open keep theirs until they close)."""
        self._pool.close()

    def check(self, url: str) -> None:
        """Raise DownloadRefused unless this client may download `url` (`check_url`, with its permits)."""
        check_url(url, self.patterns, self._permits)

    def request(self, method: str, url: str, headers: Mapping[str, str]) -> tuple[str, Response]:
        """`method` `url`, following up to `MAX_REDIRECTS` redirects (each checked); the final URL and
        the open response (close it). Raises DownloadRefused, OSError or http.client.HTTPException."""
        for _ in range(MAX_REDIRECTS + 1):
            permitted = check_url(url, self.patterns, self._permits)
            parsed = httpx.URL(url)  # the parser check_url used: what was checked is what is connected to
            response = self._exchange(method, parsed, permitted, headers)
            location = response.header("location")
            if response.status not in _REDIRECTS or not location:
                return url, response
            response.close()
            url = urljoin(url, location)
        raise SourceUnavailable(f"{redact_url(url)}: more than {MAX_REDIRECTS} redirects")

    def _exchange(self, method: str, url: httpx.URL, permitted: bool, headers: Mapping[str, str]) -> Response:
        """One request and its answer's head, on a kept connection to the same place if there is one."""
        key: PoolKey = (url.scheme, url.raw_host.decode("ascii").lower(), url.port or DEFAULT_PORTS[url.scheme],
                        permitted)
        kept = self._pool.take(key)
        if kept is not None:
            try:
                return self._send(kept, key, method, url, headers)
            except _STALE:
                pass
        return self._send(self._connection(url, permitted), key, method, url, headers)

    def _send(self, connection: http.client.HTTPConnection, key: PoolKey, method: str, url: httpx.URL,
              headers: Mapping[str, str]) -> Response:
        try:
            connection.request(method, url.raw_path.decode("ascii"), headers={**_HEADERS, **headers})
            answer = connection.getresponse()
        except BaseException:
            connection.close()
            raise
        return Response(connection, answer, partial(self._pool.give, key))

    def _connection(self, url: httpx.URL, permitted: bool) -> http.client.HTTPConnection:
        host = url.raw_host.decode("ascii")
        port = url.port or DEFAULT_PORTS[url.scheme]
        connection: _GuardedHTTP
        if url.scheme == "https":
            connection = _GuardedHTTPS(host, port, timeout=self._read_timeout, context=self._tls)
        else:
            connection = _GuardedHTTP(host, port, timeout=self._read_timeout)
        connection.guard, connection.connect_timeout = self._guard, self._connect_timeout
        connection.permitted = permitted
        return connection


def http_client(patterns: Sequence[str], connect_timeout: float, read_timeout: float, *,
                resolve: Resolver = resolve_host, permits: Permits | None = None, keep_alive: int = 4
                ) -> DownloadClient:
    """The download client: only allowed hosts and addresses (redirects too), and URLs `permits`
    holds a one-file permission for; `keep_alive` idle connections kept per host. `resolve`
    (host, port) → addresses is for tests."""
    return DownloadClient(patterns, connect_timeout, read_timeout, resolve=resolve, permits=permits,
                          keep_alive=keep_alive)


@dataclass
class Response:
    """One open answer and the connection it came on (given back to `release` when read to the end)."""

    connection: http.client.HTTPConnection
    answer: http.client.HTTPResponse
    release: Callable[[http.client.HTTPConnection], None] | None = None
    _closed: bool = field(default=False, repr=False)
    _interrupted: bool = field(default=False, repr=False)

    @property
    def status(self) -> int:
        return self.answer.status

    def header(self, name: str) -> str:
        return self.answer.getheader(name) or ""

    def close(self) -> None:
        """Close the answer; keep the connection when its answer was read to the end (idempotent)."""
        if self._closed:
            return
        self._closed = True
        # length 0: every byte of the body read (a HEAD has none); a cut body leaves length > 0
        reusable = not self.answer.will_close and self.answer.length == 0 and not self._interrupted
        self.answer.close()
        if reusable and self.release is not None:
            self.release(self.connection)
        else:
            self.connection.close()

    def interrupt(self) -> None:
        """From another thread: make a read blocked on this answer return now (the connection is not kept)."""
        self._interrupted = True
        sock = self.connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed or never connected: nothing blocks on it


@dataclass
class Download:
    """An open download (a context manager that closes it): iterate `chunks()`.

    `start` is the file offset of the body's first byte, `length` the body's Content-Length,
    `total` the whole file's size when known, `etag` the host's ETag.
    """

    url: str
    start: int
    length: int | None
    total: int | None
    etag: str | None
    content_type: str | None
    _response: Response
    _chunk: int
    received: int = 0

    def __enter__(self) -> Download:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection (idempotent)."""
        self._response.close()

    @property
    def status(self) -> int:
        """The answer's HTTP status (200, or 206 for a range)."""
        return self._response.status

    def interrupt(self) -> None:
        """From another thread: end a read blocked in `chunks()` (it then raises IncompleteDownload)."""
        self._response.interrupt()

    def chunks(self) -> Iterator[bytes]:
        """The body in chunks of `_chunk` bytes (the last may be shorter). When it breaks, or ends
        short of Content-Length, every byte that did arrive is yielded first, then IncompleteDownload
        is raised: `start + received` is where a resume goes on."""
        broke: str | None = None
        while True:
            try:
                chunk = self._response.answer.read(self._chunk)
            except (OSError, http.client.HTTPException) as exc:
                broke = type(exc).__name__
                break
            if not chunk:
                break
            if self.length is not None and self.received + len(chunk) > self.length:
                raise IncompleteDownload(f"{redact_url(self.url)} sent more than {self.length} bytes")
            self.received += len(chunk)
            yield chunk
        self._check_end(broke)

    def _check_end(self, broke: str | None) -> None:
        at = self.start + self.received
        if broke is not None:
            raise IncompleteDownload(f"download of {redact_url(self.url)} broke after {at} bytes: {broke}")
        if self.length is not None and self.received != self.length:
            raise IncompleteDownload(f"{redact_url(self.url)} ended after {at} of {self.start + self.length} bytes")


def open_download(client: DownloadClient, url: str, chunk_size: int, *, offset: int = 0,
                  etag: str | None = None, end: int | None = None) -> Download:
    """GET `url` as a stream, from byte `offset` on (to byte `end` included, when given: a range even
    from 0; see the module docstring); map statuses and transport errors to the error tree:
    UrlRefused, SourceMissing (404), SourceUnavailable."""
    shown = redact_url(url)
    ranged = bool(offset) or end is not None
    try:
        url, response = client.request("GET", url, _range_headers(offset, etag, end) if ranged else {})
    except (OSError, http.client.HTTPException) as exc:
        raise SourceUnavailable(f"cannot download {shown}: {type(exc).__name__}: {scrub(str(exc))}") from None
    try:
        start, total = _check_download(response, shown, offset, ranged)
    except BaseException:
        response.close()
        raise
    length = _length(response)
    return Download(url=url, start=start, length=length, total=total if response.status == 206 else length,
                    etag=response.header("etag") or None, content_type=response.header("content-type") or None,
                    _response=response, _chunk=chunk_size)


def _range_headers(offset: int, etag: str | None, end: int | None) -> dict[str, str]:
    headers = {"Range": f"bytes={offset}-{'' if end is None else end}"}
    if etag and not etag.startswith("W/"):  # If-Range needs a strong validator
        headers["If-Range"] = etag
    return headers


def _length(response: Response) -> int | None:
    length = response.header("content-length")
    return int(length) if length.isdigit() else None


def _check_download(response: Response, shown: str, offset: int, ranged: bool) -> tuple[int, int | None]:
    """(start, total) of an acceptable answer to a GET from `offset`; raises otherwise."""
    if response.status != 206 or not ranged:
        _check_status(response, shown)
        return 0, None
    match = _CONTENT_RANGE.match(response.header("content-range").strip())
    if match is None or int(match[1]) != offset:
        raise SourceUnavailable(
            f"{shown} answered a range from byte {offset} with Content-Range {response.header('content-range')!r}"
        )
    return offset, None if match[3] == "*" else int(match[3])


def _check_status(response: Response, shown: str) -> None:
    status = response.status
    if status == 200:
        return
    if status in REFUSED_STATUSES:
        raise UrlRefused(f"{shown} answered {status}: the URL expired or no longer grants the file")
    if status in MISSING_STATUSES:
        raise SourceMissing(f"{shown} answered {status}: the file is gone")
    raise SourceUnavailable(f"{shown} answered {status}")


def source_size(client: DownloadClient, url: str) -> int:
    """The source's Content-Length, from a HEAD request (for a server-side copy)."""
    shown = redact_url(url)
    try:
        _, response = client.request("HEAD", url, {})
    except (OSError, http.client.HTTPException) as exc:
        raise SourceUnavailable(f"cannot reach {shown}: {type(exc).__name__}: {scrub(str(exc))}") from None
    try:
        _check_status(response, shown)
        length = response.header("content-length")
    finally:
        response.close()
    if not length.isdigit():
        raise SourceUnavailable(f"{shown} gave no Content-Length")
    return int(length)
