"""A small fault-injecting HTTP proxy for storage tests: real sockets on loopback, one thread per
connection, in front of any HTTP server (moto_server, Azurite, a GCS emulator).

Point a client at ``proxy.url`` instead of the server's URL. Every request is forwarded as it came
(method, target, headers in order, body; only hop-by-hop headers such as ``Expect`` are dropped), unless
a rule matches it first. Rules are tried in the order they were added; the first one that matches, and
has uses left, acts:

- `answer`: reply ``status`` with an S3-style XML error body (``<Error><Code>…</Code><Message>…``);
- `reset`: close the connection with a TCP RST (after reading the request), as a crashed server would;
- `delay`: wait ``seconds``, then forward;
- `strip`: forward without the header lines its ``header`` pattern matches, as a store ignoring them
  would act (moto_server checks no signature);
- `lose_answer`: forward (the store acts on the request), then reset the connection instead of
  answering, as a network that drops the reply;
- `record`: just forward.

Each rule keeps the requests it matched in ``rule.seen`` (method, target, headers with lower-case
names, the start of the body), and ``proxy.requests`` keeps every request, so a test can see what
really went on the wire; ``proxy.relaying`` counts the requests on their way (read, not yet answered). A
request whose body ends before its Content-Length (a client killed mid-send) is neither recorded nor
forwarded: the connection is closed, as a server discards a request it never got whole::

    with FaultProxy(moto_server) as proxy:
        rejected = proxy.add(answer(400, "InvalidArgument", "x-amz-checksum-crc32 header not supported",
                                    header=r"^x-amz-checksum-"))
        ...  # a storage configured with s3_custom_endpoint_url=proxy.url
        assert rejected.seen
"""

from __future__ import annotations

import http.client
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Literal, Self, TypedDict
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from typing_extensions import Unpack

Action = Literal["answer", "reset", "delay", "strip", "lose_answer", "record"]
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                         "upgrade", "expect"})  # fmt: skip
_COPY_CHUNK = 256 * 1024
RECORDED_BODY = 64 * 1024


@dataclass(frozen=True)
class Recorded:
    """One request as the proxy received it."""

    method: str
    target: str  # path and query string
    headers: dict[str, str]  # lower-case names
    body: bytes = b""  # its first RECORDED_BODY bytes

    def has_header(self, pattern: str) -> bool:
        """True when a ``name: value`` line matches the regular expression `pattern`."""
        return any(re.search(pattern, f"{name}: {value}") for name, value in self.headers.items())


class Match(TypedDict, total=False):
    """The conditions of a rule, as keyword arguments of `answer`, `reset`, `delay` and `record`."""

    method: str | None
    path: str | None
    header: str | None
    times: int | None


@dataclass
class Rule:
    """What to do with the requests that match every given condition (None: any)."""

    action: Action = "record"
    method: str | None = None  # exact, e.g. "PUT"
    path: str | None = None  # regular expression searched in the target (path and query)
    header: str | None = None  # regular expression searched in each "name: value" line (names lower-case)
    times: int | None = None  # how many requests it acts on; None: every one
    status: int = 500
    code: str = "InternalError"
    message: str = "injected by the fault proxy"
    seconds: float = 0.0
    seen: list[Recorded] = field(default_factory=list)

    def matches(self, request: Recorded) -> bool:
        if self.times is not None and len(self.seen) >= self.times:
            return False
        if self.method is not None and request.method != self.method:
            return False
        if self.path is not None and not re.search(self.path, request.target):
            return False
        return self.header is None or request.has_header(self.header)


def answer(status: int, code: str, message: str = "injected by the fault proxy", **match: Unpack[Match]) -> Rule:
    """Reply `status` with an S3-style XML error (``Code``, ``Message``) instead of forwarding."""
    return Rule("answer", status=status, code=code, message=message, **match)


def reset(**match: Unpack[Match]) -> Rule:
    """Reset the connection instead of answering."""
    return Rule("reset", **match)


def delay(seconds: float, **match: Unpack[Match]) -> Rule:
    """Wait `seconds`, then forward."""
    return Rule("delay", seconds=seconds, **match)


def strip(header: str, **match: Unpack[Match]) -> Rule:
    """Forward the requests with a header line matching `header`, without those lines."""
    return Rule("strip", header=header, **match)


def lose_answer(**match: Unpack[Match]) -> Rule:
    """Forward the request, then reset the connection: the store did it, the client never hears."""
    return Rule("lose_answer", **match)


def record(**match: Unpack[Match]) -> Rule:
    """Forward, keeping the matching requests in ``rule.seen``."""
    return Rule("record", **match)


class FaultProxy:
    """The proxy: `start` (or ``with``) binds a free loopback port; ``url`` is where clients go."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 80
        self.rules: list[Rule] = []
        self.requests: list[Recorded] = []
        self.relaying = 0  # requests read and not yet answered (see `idle`)
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Forget every rule and recorded request."""
        with self._lock:
            self.rules.clear()
            self.requests.clear()

    def decide(self, request: Recorded) -> Rule | None:
        """Record `request`; the first rule with uses left that matches it (which records it too)."""
        with self._lock:
            self.requests.append(request)
            for rule in self.rules:
                if rule.matches(request):
                    rule.seen.append(request)
                    return rule
        return None

    def idle(self) -> bool:
        """True while no request is on its way through (after a client was killed: the store has acted
        on every request it will get from it)."""
        with self._lock:
            return self.relaying == 0

    def _relaying(self, change: int) -> None:
        with self._lock:
            self.relaying += change

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: FaultProxy


class _Handler(BaseHTTPRequestHandler):
    """One client connection (keep-alive), with its own connection to the upstream server."""

    protocol_version = "HTTP/1.1"
    server: _Server
    _upstream: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: tests read `requests` instead

    def finish(self) -> None:
        """Close the upstream connection with the client's, even when the client vanished mid-request."""
        try:
            super().finish()
        finally:
            if self._upstream is not None:
                self._upstream.close()

    def relay(self) -> None:
        self.server.proxy._relaying(+1)
        try:
            self._relay()
        finally:
            self.server.proxy._relaying(-1)

    def _relay(self) -> None:
        body = self._read_body()
        length = self.headers.get("Content-Length")
        if length is not None and len(body) < int(length):
            self.close_connection = True  # the client went away mid-body: nothing to forward
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        request = Recorded(self.command, self.path, headers, body[:RECORDED_BODY])
        rule = self.server.proxy.decide(request)
        if rule is not None and rule.action == "reset":
            self._reset()
        elif rule is not None and rule.action == "lose_answer":
            self._send_upstream(body).read()
            self._reset()
        elif rule is not None and rule.action == "answer":
            self._answer(rule)
        else:
            if rule is not None and rule.action == "delay":
                time.sleep(rule.seconds)
            self._forward(body, rule.header if rule is not None and rule.action == "strip" else None)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = relay

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def _answer(self, rule: Rule) -> None:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{escape(rule.code)}</Code><Message>{escape(rule.message)}</Message>"
            "<RequestId>faultproxy</RequestId></Error>"
        ).encode()
        self.send_response_only(rule.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _forward(self, body: bytes, drop: str | None = None) -> None:
        try:
            response = self._send_upstream(body, drop)
        except OSError as exc:
            self._upstream = None
            self._answer(Rule("answer", status=502, code="BadGateway", message=f"upstream: {exc}"))
            return
        self.send_response_only(response.status, response.reason)
        length = response.getheader("Content-Length")
        no_body = self.command == "HEAD" or response.status in (204, 304)
        payload = b"" if no_body or length is not None else response.read()
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP and (length is not None or name.lower() != "content-length"):
                self.send_header(name, value)
        if length is None and not no_body:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self._copy_body(response, payload, no_body)

    def _send_upstream(self, body: bytes, drop: str | None = None) -> http.client.HTTPResponse:
        if self._upstream is None:
            proxy = self.server.proxy
            self._upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=60)
        upstream = self._upstream
        upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            dropped = drop is not None and re.search(drop, f"{name.lower()}: {value}") is not None
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length" and not dropped:
                upstream.putheader(name, value)
        if body or self.command in ("PUT", "POST", "PATCH"):
            upstream.putheader("Content-Length", str(len(body)))
        upstream.endheaders(body)
        return upstream.getresponse()

    def _copy_body(self, response: http.client.HTTPResponse, payload: bytes, no_body: bool) -> None:
        if payload:
            self.wfile.write(payload)
        elif not no_body:
            while chunk := response.read(_COPY_CHUNK):
                self.wfile.write(chunk)
        response.read()  # drain, so the upstream connection can be reused
