"""Small HTTP/1.1 keep-alive server plumbing shared by the fake CDN and the fake REST API."""

from __future__ import annotations

import socket
import socketserver
import sys
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """Request handler that speaks HTTP/1.1 keep-alive, logs nothing and ignores client hang-ups."""

    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections are dropped after this many seconds
    server_version = "fakestream"
    sys_version = ""

    def setup(self) -> None:
        """Turn off Nagle so small header/body writes are not delayed on keep-alive connections."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self) -> None:
        """Serve requests until the client goes away; a reset connection is not an error."""
        try:
            super().handle()
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Stay silent (tests run many requests)."""

    def read_body(self) -> bytes:
        """Read the request body announced by Content-Length (chunked bodies are not supported)."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def request_headers(self) -> dict[str, str]:
        """The request headers as a plain dict with lower-cased names (first value wins for repeats)."""
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), value)
        return headers

    def send_full(self, status: int, body: bytes, headers: Mapping[str, str], *, head: bool = False) -> None:
        """Send a complete response with Content-Length; omit the body for HEAD."""
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)


class QuietServer(ThreadingHTTPServer):
    """Threading HTTP server bound to loopback that skips reverse DNS and hides client hang-ups."""

    daemon_threads = True

    def server_bind(self) -> None:
        """Bind without ``socket.getfqdn`` (slow or absent DNS must not delay tests)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore connection resets; print anything else (a bug in the fake) to stderr."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class RunningServer:
    """A QuietServer serving in a daemon thread on 127.0.0.1 and a free port."""

    def __init__(self, handler_factory: Callable[..., BaseHTTPRequestHandler]) -> None:
        self.server = QuietServer(("127.0.0.1", 0), handler_factory)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop accepting requests and close the listening socket."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
