"""Downloading a file from Stream's signed URL: only from allowed hosts, streamed, checked.

The URL is a credential: it is never logged or put into an error message with its query string.
A download may start part-way (``offset``): it then asks for ``Range: bytes=N-`` (with
``If-Range: <ETag>`` when one is known) and accepts a 206 only when its ``Content-Range`` starts
at N; a 200 is the whole file again (the server ignored the range, or the file changed), and
`Download.start` is then 0 so the caller can tell.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from types import TracebackType
from urllib.parse import urlsplit

import httpx

from config.logging import redact_url, scrub
from worker.errors import DownloadRefused, IncompleteDownload, SourceMissing, SourceUnavailable, UrlRefused

MISSING_STATUSES = frozenset({401, 403, 404, 410})
REFUSED_STATUSES = frozenset({401, 403, 410})  # the signature no longer grants the file: a fresh URL may
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def host_allowed(url: str, patterns: Sequence[str]) -> bool:
    """True when `url` is http(s) and its host (or host:port) matches one of `patterns`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    host = parts.hostname.lower()
    candidates = {host} if parts.port is None else {host, f"{host}:{parts.port}"}
    return any(fnmatchcase(c, p) for c in candidates for p in patterns)


def check_url(url: str, patterns: Sequence[str]) -> None:
    """Raise DownloadRefused unless `url` may be downloaded."""
    if not host_allowed(url, patterns):
        raise DownloadRefused(
            f"{redact_url(url)} is not on an allowed download host "
            f"(download_hosts = {list(patterns)})"
        )


def http_client(patterns: Sequence[str], connect_timeout: float, read_timeout: float) -> httpx.Client:
    """A client that follows redirects only to allowed hosts and never decodes the body."""

    def refuse_other_hosts(request: httpx.Request) -> None:
        check_url(str(request.url), patterns)

    timeout = httpx.Timeout(read_timeout, connect=connect_timeout, pool=connect_timeout)
    return httpx.Client(
        timeout=timeout,
        follow_redirects=True,
        max_redirects=5,
        event_hooks={"request": [refuse_other_hosts]},
        headers={"Accept-Encoding": "identity", "User-Agent": "stream-archiver"},
        limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
    )


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
    _response: httpx.Response
    _chunk: int
    received: int = 0

    def __enter__(self) -> Download:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection (idempotent)."""
        try:
            self._response.close()
        except httpx.HTTPError:
            pass  # a broken connection is being thrown away anyway

    def chunks(self) -> Iterator[bytes]:
        """The body in chunks of `_chunk` bytes. When it breaks, or ends short of (or past)
        Content-Length, every byte that did arrive is yielded first, then IncompleteDownload is
        raised: `start + received` is where a resume goes on."""
        pending = bytearray()
        broke: str | None = None
        try:
            for piece in self._response.iter_raw():
                pending += piece
                while len(pending) >= self._chunk:
                    yield self._take(pending, self._chunk)
        except httpx.HTTPError as exc:
            broke = type(exc).__name__
        if pending:
            yield self._take(pending, len(pending))
        self._check_end(broke)

    def _take(self, pending: bytearray, count: int) -> bytes:
        if self.length is not None and self.received + count > self.length:
            raise IncompleteDownload(f"{redact_url(self.url)} sent more than {self.length} bytes")
        chunk = bytes(pending[:count])
        del pending[:count]
        self.received += count
        return chunk

    def _check_end(self, broke: str | None) -> None:
        at = self.start + self.received
        if broke is not None:
            raise IncompleteDownload(f"download of {redact_url(self.url)} broke after {at} bytes: {broke}")
        if self.length is not None and self.received != self.length:
            raise IncompleteDownload(f"{redact_url(self.url)} ended after {at} of {self.start + self.length} bytes")


def open_download(client: httpx.Client, url: str, chunk_size: int, *, offset: int = 0,
                  etag: str | None = None) -> Download:
    """GET `url` as a stream, from byte `offset` on (see the module docstring); map statuses and
    transport errors to the error tree: UrlRefused, SourceMissing (404), SourceUnavailable."""
    shown = redact_url(url)
    headers = _range_headers(offset, etag)
    try:
        response = client.send(client.build_request("GET", url, headers=headers), stream=True)
    except httpx.HTTPError as exc:
        raise SourceUnavailable(f"cannot download {shown}: {type(exc).__name__}: {scrub(str(exc))}") from None
    try:
        start, total = _check_download(response, shown, offset)
    except BaseException:
        response.close()
        raise
    length = _length(response)
    return Download(url=url, start=start, length=length, total=total if start else length,
                    etag=response.headers.get("etag"), content_type=response.headers.get("content-type"),
                    _response=response, _chunk=chunk_size)


def _range_headers(offset: int, etag: str | None) -> dict[str, str]:
    if not offset:
        return {}
    headers = {"Range": f"bytes={offset}-"}
    if etag and not etag.startswith("W/"):  # If-Range needs a strong validator
        headers["If-Range"] = etag
    return headers


def _length(response: httpx.Response) -> int | None:
    length = response.headers.get("content-length", "")
    return int(length) if length.isdigit() else None


def _check_download(response: httpx.Response, shown: str, offset: int) -> tuple[int, int | None]:
    """(start, total) of an acceptable answer to a GET from `offset`; raises otherwise."""
    if response.status_code != 206 or not offset:
        _check_status(response, shown)
        return 0, None
    match = _CONTENT_RANGE.match(response.headers.get("content-range", "").strip())
    if match is None or int(match[1]) != offset:
        raise SourceUnavailable(
            f"{shown} answered a range from byte {offset} with Content-Range "
            f"{response.headers.get('content-range')!r}"
        )
    return offset, None if match[3] == "*" else int(match[3])


def _check_status(response: httpx.Response, shown: str) -> None:
    status = response.status_code
    if status == 200:
        return
    if status in REFUSED_STATUSES:
        raise UrlRefused(f"{shown} answered {status}: the URL expired or no longer grants the file")
    if status in MISSING_STATUSES:
        raise SourceMissing(f"{shown} answered {status}: the file is gone")
    raise SourceUnavailable(f"{shown} answered {status}")


def source_size(client: httpx.Client, url: str) -> int:
    """The source's Content-Length, from a HEAD request (for a server-side copy)."""
    shown = redact_url(url)
    try:
        response = client.head(url)
    except httpx.HTTPError as exc:
        raise SourceUnavailable(f"cannot reach {shown}: {type(exc).__name__}: {scrub(str(exc))}") from None
    _check_status(response, shown)
    length = response.headers.get("content-length", "")
    if not length.isdigit():
        raise SourceUnavailable(f"{shown} gave no Content-Length")
    return int(length)
