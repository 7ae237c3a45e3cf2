"""Downloading a file from Stream's signed URL: only from allowed hosts, streamed, checked.

The URL is a credential: it is never logged or put into an error message with its query string.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

import httpx

from config.logging import redact_url, scrub
from worker.errors import DownloadRefused, IncompleteDownload, SourceMissing, SourceUnavailable

MISSING_STATUSES = frozenset({401, 403, 404, 410})


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
    """An open download: iterate `chunks()`; `length` is the announced Content-Length."""

    url: str
    length: int | None
    content_type: str | None
    _response: httpx.Response
    _chunk: int
    received: int = 0

    def chunks(self) -> Iterator[bytes]:
        """The body in chunks; raises IncompleteDownload if it ends short of (or past) Content-Length."""
        try:
            for chunk in self._response.iter_raw(self._chunk):
                self.received += len(chunk)
                if self.length is not None and self.received > self.length:
                    raise IncompleteDownload(f"{redact_url(self.url)} sent more than {self.length} bytes")
                yield chunk
        except httpx.HTTPError as exc:
            raise IncompleteDownload(
                f"download of {redact_url(self.url)} broke after {self.received} bytes: "
                f"{type(exc).__name__}"
            ) from None
        if self.length is not None and self.received != self.length:
            raise IncompleteDownload(
                f"{redact_url(self.url)} ended after {self.received} of {self.length} bytes"
            )


@contextmanager
def open_download(client: httpx.Client, url: str, chunk_size: int) -> Iterator[Download]:
    """GET `url` as a stream; map statuses and transport errors to the error tree."""
    shown = redact_url(url)
    try:
        with client.stream("GET", url) as response:
            _check_status(response, shown)
            length = response.headers.get("content-length")
            yield Download(
                url=url,
                length=int(length) if length and length.isdigit() else None,
                content_type=response.headers.get("content-type"),
                _response=response,
                _chunk=chunk_size,
            )
    except httpx.HTTPError as exc:
        raise SourceUnavailable(f"cannot download {shown}: {type(exc).__name__}: {scrub(str(exc))}") from None


def _check_status(response: httpx.Response, shown: str) -> None:
    status = response.status_code
    if status == 200:
        return
    if status in MISSING_STATUSES:
        raise SourceMissing(f"{shown} answered {status}: the URL expired or the file is gone")
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
