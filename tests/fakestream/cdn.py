"""The fake CDN: CloudFront-style signed URLs in front of an S3-like file store.

Answers like CloudFront + S3: 403 XML for a missing, forged or expired signature, 404 XML
for a deleted or unknown key, 200/206/416 with ``Range``/``If-Range`` support, and streams
bodies in 1 MiB chunks (``socket.sendfile`` for files on disk). Knobs for tests: `Cdn.ignore_range`
(answer every GET with the whole file, as a source without range support does), faults that cut
only the answer to a range from a given byte, and `Cdn.connections` (TCP connections accepted). For the
benchmark of a CDN far away: `Cdn.first_byte_delay` (seconds before the first byte of every answer),
`Cdn.handshake_delay` (seconds more before the first answer on each new connection: the TCP and TLS
handshakes' round trips, which plain HTTP on loopback does not have),
`Cdn.rate` (bytes per second at most, per connection, for bodies) and `Cdn.close_connections` (every
answer says ``Connection: close``: one connection per request).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from email.utils import format_datetime
from typing import Literal
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from tests.fakestream.httpbase import QuietHandler
from tests.fakestream.models import CHUNK_SIZE, StoredFile
from tests.fakestream.store import Store

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_FAULT_CODES = {
    403: "AccessDenied",
    404: "NoSuchKey",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


# --------------------------------------------------------------------------- signing


class UrlSigner:
    """Signs and checks ``?Expires=&Signature=&Key-Pair-Id=`` URLs with a CDN-private HMAC key.

    The key is random per fake and unrelated to the API secret (as with CloudFront key pairs).
    The signature covers the URL-escaped path and ``Expires``.
    """

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self.key_pair_id = "APKA" + secrets.token_hex(8).upper()

    def signature(self, path: str, expires: int) -> str:
        """CloudFront-alphabet base64 (``+=/`` → ``-_~``) of HMAC-SHA256 over ``path?Expires=N``."""
        mac = hmac.new(self._key, f"{path}?Expires={expires}".encode(), hashlib.sha256).digest()
        return base64.b64encode(mac).decode().translate(str.maketrans("+=/", "-_~"))

    def url(self, host: str, path: str, expires: int) -> str:
        """A full signed URL for ``path`` on ``host``."""
        sig = self.signature(path, expires)
        return f"http://{host}{path}?Expires={expires}&Signature={sig}&Key-Pair-Id={self.key_pair_id}"

    def problem(self, path: str, query: dict[str, list[str]], now: float) -> tuple[str, str] | None:
        """``None`` if the query signs ``path`` and has not expired, else CloudFront's (Code, Message)."""
        expires, sig, kpid = (query.get(k, [""])[0] for k in ("Expires", "Signature", "Key-Pair-Id"))
        if not kpid:
            return "MissingKey", "Missing Key-Pair-Id query parameter or cookie value"
        if not expires or not sig or not expires.isdigit():
            return "AccessDenied", "Access denied"
        if kpid != self.key_pair_id:
            return "InvalidKey", "Unknown Key"
        if not hmac.compare_digest(sig, self.signature(path, int(expires))):
            return "AccessDenied", "Access denied"
        if int(expires) < now:
            return "AccessDenied", "Request has expired"
        return None


# --------------------------------------------------------------------------- fault injection


@dataclass
class _Fault:
    kind: Literal["fail", "truncate"]
    path_contains: str
    remaining: int
    value: int  # status for "fail", byte count for "truncate"
    range_from: int | None = None  # only requests whose Range starts at this byte


class Faults:
    """Queued one-shot faults, matched by substring of the request path (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []

    def add(self, kind: Literal["fail", "truncate"], path_contains: str, value: int, count: int,
            range_from: int | None = None) -> None:
        """Queue ``count`` faults of ``kind`` for paths containing ``path_contains`` (and a Range
        starting at byte ``range_from``, when given)."""
        if count < 1:
            raise ValueError("count must be >= 1")
        with self._lock:
            self._faults.append(_Fault(kind, path_contains, count, value, range_from))

    def clear(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._faults.clear()

    def take(self, kind: Literal["fail", "truncate"], path: str, range_from: int | None = None) -> int | None:
        """Consume the oldest matching fault and return its value, or None when none matches."""
        with self._lock:
            for fault in self._faults:
                if fault.kind == kind and fault.path_contains in path and fault.range_from in (None, range_from):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault.value
        return None


# --------------------------------------------------------------------------- ranges


class RangeNotSatisfiable(Exception):
    """The Range header asks for bytes the file does not have (→ 416)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Inclusive (start, end) for a single ``bytes=a-b`` / ``a-`` / ``-n`` range, or None for "whole file".

    Multi-range and malformed headers are ignored (RFC 9110 allows answering 200).
    """
    match = _RANGE.match((header or "").strip())
    if match is None or (not match[1] and not match[2]):
        return None
    if not match[1]:  # suffix range: last n bytes
        n = int(match[2])
        if n == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(0, size - n), size - 1
    start = int(match[1])
    end = int(match[2]) if match[2] else size - 1
    if match[2] and end < start:
        return None  # syntactically invalid: ignore the header
    if start >= size:
        raise RangeNotSatisfiable
    return start, min(end, size - 1)


# --------------------------------------------------------------------------- the CDN


class Cdn:
    """CDN state: the signer, the file store and the fault queue (shared by all handler threads)."""

    def __init__(self, store: Store, signer: UrlSigner) -> None:
        self.store = store
        self.signer = signer
        self.faults = Faults()
        self.missing_file_status = 404  # set to 403 to mimic S3 buckets without s3:ListBucket
        self.ignore_range = False  # True: every GET gets the whole file (200), as from a source without ranges
        self.connections = 0  # TCP connections accepted
        self.first_byte_delay = 0.0  # seconds before the first byte of every answer (a far-away CDN)
        self.handshake_delay = 0.0  # seconds more before the first answer on a new connection (TCP + TLS setup)
        self.rate = 0  # bytes per second per connection for bodies (0: no cap)
        self.close_connections = False  # True: every answer says `Connection: close` and the connection ends
        self._lock = threading.Lock()

    def connected(self) -> None:
        """Count one accepted connection."""
        with self._lock:
            self.connections += 1


def xml_error(code: str, message: str, key: str | None = None) -> bytes:
    """S3/CloudFront-style ``<Error>`` XML body."""
    key_xml = f"<Key>{escape(key)}</Key>" if key else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{escape(code)}</Code>'
        f"<Message>{escape(message)}</Message>{key_xml}</Error>"
    ).encode()


class CdnHandler(QuietHandler):
    """Serves GET/HEAD of signed file URLs."""

    cdn: Cdn  # set by the handler factory in server.py

    def setup(self) -> None:
        """Count the connection (a handler serves one connection)."""
        super().setup()
        self.cdn.connected()
        self._answered = False

    def end_headers(self) -> None:
        """Say `Connection: close` (and close after the answer) when the CDN is told to."""
        if self.cdn.close_connections:
            self.send_header("Connection", "close")  # sets close_connection
        super().end_headers()

    def do_GET(self) -> None:
        """Serve a file body (honours Range/If-Range and queued faults)."""
        self._serve(head=False)

    def do_HEAD(self) -> None:
        """Serve a file's headers only."""
        self._serve(head=True)

    def _serve(self, *, head: bool) -> None:
        """Check faults, signature and existence, then send the file or the right error."""
        self.read_body()
        delay = self.cdn.first_byte_delay + (0.0 if self._answered else self.cdn.handshake_delay)
        self._answered = True
        if delay > 0:
            time.sleep(delay)
        split = urlsplit(self.path)
        path = split.path
        self.cdn.store.log_cdn(self.command, path, self.request_headers())
        asked = _RANGE.match((self.headers.get("Range") or "").strip())
        range_from = int(asked[1]) if asked and asked[1] and not self.cdn.ignore_range else None
        status = None if head else self.cdn.faults.take("fail", path, range_from)
        if status is not None:
            self._error(status, _FAULT_CODES.get(status, "InjectedFault"), f"injected failure {status}")
            return
        problem = self.cdn.signer.problem(path, parse_qs(split.query, keep_blank_values=True), time.time())
        if problem is not None:
            self._error(403, *problem, head=head)
            return
        stored = self.cdn.store.file_at(path)
        if stored is None:
            self._missing(path, head)
            return
        self._send_file(stored, head=head)

    def _missing(self, path: str, head: bool) -> None:
        """404 NoSuchKey (or 403 AccessDenied when configured) for a deleted/unknown key."""
        if self.cdn.missing_file_status == 403:
            self._error(403, "AccessDenied", "Access Denied", head=head)
        else:
            self._error(404, "NoSuchKey", "The specified key does not exist.", head=head, key=path[1:])

    def _error(self, status: int, code: str, message: str, *, head: bool = False, key: str | None = None) -> None:
        """Send a small XML error like CloudFront/S3 do."""
        headers = {"Content-Type": "application/xml", "X-Cache": "Error from cloudfront"}
        self.send_full(status, xml_error(code, message, key), headers, head=head)

    def _send_file(self, stored: StoredFile, *, head: bool) -> None:
        """Send 200/206/416 with S3-like headers, then the (possibly truncated) body."""
        headers = {
            "Content-Type": stored.content_type,
            "ETag": stored.etag,
            "Accept-Ranges": "bytes",
            "Last-Modified": format_datetime(stored.end_time, usegmt=True),
            "X-Cache": "Miss from cloudfront",
        }
        if_range = self.headers.get("If-Range")
        range_header = None if self.cdn.ignore_range else self.headers.get("Range")
        if if_range is not None and if_range.strip() not in (stored.etag, headers["Last-Modified"]):
            range_header = None
        try:
            span = parse_range(range_header, stored.size)
        except RangeNotSatisfiable:
            headers["Content-Range"] = f"bytes */{stored.size}"
            self.send_full(
                416,
                xml_error("InvalidRange", "The requested range is not satisfiable"),
                {**headers, "Content-Type": "application/xml"},
                head=head,
            )
            return
        start, end = span if span is not None else (0, stored.size - 1)
        length = end - start + 1
        # taken before the head goes out, so a fault meant for the first answer is never taken by the
        # request its head prompts
        cut = None if head else self.cdn.faults.take("truncate", urlsplit(self.path).path,
                                                     start if span is not None else None)
        self.send_response(206 if span is not None else 200)
        if span is not None:
            headers["Content-Range"] = f"bytes {start}-{end}/{stored.size}"
        for name, value in {**headers, "Content-Length": str(length)}.items():
            self.send_header(name, value)
        self.end_headers()
        if head:
            return
        self.cdn.store.count_download(stored)
        self._write_body(stored, start, length if cut is None else min(cut, length))
        if cut is not None and cut < length:
            self.close_connection = True  # the client sees fewer bytes than Content-Length

    def _write_body(self, stored: StoredFile, start: int, count: int) -> None:
        """Write ``count`` bytes of the content from ``start``: sendfile for paths, 1 MiB slices for bytes;
        in smaller slices, each sent no sooner than `Cdn.rate` allows, when the rate is capped (a strict cap:
        by any moment, at most rate × the time since the body began has been sent)."""
        if count <= 0:
            return
        rate = self.cdn.rate
        step = max(16 * 1024, min(CHUNK_SIZE, rate // 64)) if rate > 0 else CHUNK_SIZE
        began, end = time.monotonic(), start + count
        handle = None if isinstance(stored.content, bytes) else stored.content.open("rb")
        try:
            for offset in range(start, end, step):
                size = min(step, end - offset)
                # sent once the rate allows every byte up to its end: never ahead of the cap
                if rate > 0 and (wait := began + (offset + size - start) / rate - time.monotonic()) > 0:
                    time.sleep(wait)
                if handle is None:
                    assert isinstance(stored.content, bytes)
                    self.wfile.write(memoryview(stored.content)[offset : offset + size])
                else:
                    self.connection.sendfile(handle, offset=offset, count=size)
        finally:
            if handle is not None:
                handle.close()
