"""A tiny OAuth2 token endpoint on loopback, for credentials whose token URL can be pointed at it.

It answers every POST (JWT bearer, client credentials, refresh token: any grant) with an access
token, or refuses them all once told to, and records each request. Any backend can use it: a GCS
service-account JSON's ``token_uri``, an Azure authority host, an STS endpoint::

    with TokenServer() as tokens:
        info = {..., "token_uri": tokens.url}
        ...
        assert tokens.requests[0].form["grant_type"] == JWT_BEARER

    tokens.refuse(400, "invalid_grant")  # from now on, every request is refused that way
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl

import pytest

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass(frozen=True)
class TokenRequest:
    """One request the endpoint received: its path, headers and form (or JSON) fields."""

    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class _Answer:
    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)


class TokenServer:
    """A threaded HTTP server on 127.0.0.1 and a free port; ``url`` is its token endpoint."""

    def __init__(self, access_token: str = "test-access-token-0123456789", expires_in: int = 3600) -> None:
        self.access_token = access_token
        self.requests: list[TokenRequest] = []
        self._answer = _Answer(body={"access_token": access_token, "token_type": "Bearer", "expires_in": expires_in})
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, name="token-server", daemon=True)

    @property
    def url(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/token"

    def refuse(self, status: int = 400, error: str = "invalid_grant", description: str = "refused by test") -> None:
        """Answer every later request with `status` and an OAuth2 error body."""
        with self._lock:
            self._answer = _Answer(status, {"error": error, "error_description": description})

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket. Idempotent."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _record(self, request: TokenRequest) -> _Answer:
        with self._lock:
            self.requests.append(request)
            return self._answer

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the name http.server dispatches to
                length = int(self.headers.get("Content-Length") or 0)
                answer = server._record(_parse(self, self.rfile.read(length)))
                payload = json.dumps(answer.body).encode()
                self.send_response(answer.status, HTTPStatus(answer.status).phrase)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: tests read `requests` instead

        return Handler


def _parse(handler: BaseHTTPRequestHandler, body: bytes) -> TokenRequest:
    text = body.decode("utf-8", errors="replace")
    if (handler.headers.get("Content-Type") or "").startswith("application/json"):
        form = {str(k): str(v) for k, v in json.loads(text or "{}").items()}
    else:
        form = dict(parse_qsl(text))
    return TokenRequest(handler.command, handler.path, dict(handler.headers.items()), form)


@pytest.fixture
def token_server() -> Iterator[TokenServer]:
    """A running token endpoint for one test."""
    with TokenServer() as server:
        yield server
