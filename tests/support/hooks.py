"""A real HTTP endpoint for notifications, as an app would run one: it records every request (headers,
raw body), answers 200, or 503 while `failing`, hangs while `hanging`, and can go down and come back up
on the same port (connections refused meanwhile)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.ports import free_port


@dataclass(frozen=True)
class Hook:
    """One request received."""

    headers: dict[str, str]
    body: bytes
    answered: int | None  # None: it hung, and no answer was given

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    def signed_by(self, secret: str) -> bool:
        """What an app does: HMAC-SHA256 of "<timestamp>.<body>", compared in constant time."""
        stamp = self.headers["X-Archiver-Timestamp"]
        expected = "sha256=" + hmac.new(secret.encode(), stamp.encode() + b"." + self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.headers.get("X-Archiver-Signature", ""))


class HookReceiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.hooks: list[Hook] = []
        self.failing = False
        self.hanging = threading.Event()  # set: requests arriving wait until it is cleared (or 60 s), unanswered
        self.arrived = threading.Event()  # set by every request, on arrival
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/archiver?token=secret-in-query"

    def up(self) -> HookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k: v for k, v in self.headers.items()}
                hung, waited = receiver.hanging.is_set(), time.monotonic()
                receiver.arrived.set()
                while receiver.hanging.is_set() and time.monotonic() - waited < 60:
                    time.sleep(0.05)
                status = 0 if hung else 503 if receiver.failing else 200  # hung: never answered
                with receiver._lock:
                    receiver.hooks.append(Hook(headers, body, status or None))
                if status:
                    try:
                        self.send_response(status)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                    except OSError:
                        pass

            def log_message(self, *_: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def delivered(self) -> list[Hook]:
        """The requests answered 2xx."""
        with self._lock:
            return [h for h in self.hooks if h.answered is not None and 200 <= h.answered < 300]
