"""The body limit is ours (worker/edge/web/body_limit.py), not the framework's: real uvicorn servers, raw sockets,
chunked and over-declared bodies cut off at the limit with our JSON 413, the rest never read."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from starlette.types import Receive, Scope, Send

from tests.conftest import API_KEY
from tests.support.webserver import serve_in_thread
from worker.edge.web import paths
from worker.edge.web.app import create_app
from worker.edge.web.body_limit import BodyLimit
from worker.intake.webhook import MAX_BODY
from worker.ledger.store import Ledger

LIMIT = 10_000
PIECE = b"x" * 4096


class Reader:
    """A bare ASGI app with no limit of its own: reads the whole body, answers 200 with its length."""

    def __init__(self) -> None:
        self.most = 0  # the most body bytes it was ever handed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            self.most = max(self.most, size)
            more = message.get("more_body", False)
        answer = str(size).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})


def chunked(piece: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(piece), piece)


def exchange(port: int, head: bytes, pieces: Iterator[bytes], limit: int) -> tuple[bytes, int]:
    """Send `head`, then `pieces` until the server answers or `limit` bytes went; (answer, bytes sent)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        for piece in pieces:
            if sent >= limit or _answered(sock):
                break
            try:
                sock.sendall(piece)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        sock.settimeout(5)
        answer = b""
        try:  # every answer here closes the connection
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):  # a server that keeps it open: what came is the answer
            pass
    return answer, sent


def _answered(sock: socket.socket) -> bool:
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False


def status_and_json(answer: bytes) -> tuple[int, Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.fixture
def bare() -> Iterator[tuple[int, Reader]]:
    reader = Reader()
    with serve_in_thread(BodyLimit(reader, limit=LIMIT)) as base:
        yield int(base.rsplit(":", 1)[1]), reader


def test_a_chunked_body_past_the_limit_is_cut_off_with_413(bare: tuple[int, Reader]) -> None:
    port, reader = bare
    head = b"POST /anything HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer, sent = exchange(port, head, iter(lambda: chunked(PIECE), b""), limit=64 * MAX_BODY)
    assert status_and_json(answer) == (413, {"error": f"body over {LIMIT} bytes"})
    assert sent < 64 * MAX_BODY  # the sender was stopped (what it sent sits in socket buffers, unread)
    assert reader.most <= LIMIT  # the app never held a byte past the limit


def test_a_declared_length_over_the_limit_is_refused_before_the_body(bare: tuple[int, Reader]) -> None:
    port, reader = bare
    head = b"POST /anything HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n"
    answer, _ = exchange(port, head, iter([]), limit=0)
    assert status_and_json(answer) == (413, {"error": f"body over {LIMIT} bytes"})
    assert reader.most == 0


def test_bodies_up_to_the_limit_pass_whole(bare: tuple[int, Reader]) -> None:
    port, _ = bare
    body = b"y" * LIMIT
    head = b"POST /anything HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    answer, _ = exchange(port, head + chunked(body[:6000]) + chunked(body[6000:]) + b"0\r\n\r\n", iter([]), limit=0)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(str(LIMIT).encode())


def test_the_receiver_cuts_a_chunked_webhook_off_with_its_own_413(make_settings: Any, ledger: Ledger) -> None:
    """The receiver's limit does not come from FastAPI (`max_body_size` exists only from 0.164)."""
    queued: list[str] = []

    def enqueue(ids: Sequence[str]) -> None:
        queued.extend(ids)

    with serve_in_thread(create_app(make_settings(call_storage_key=""), ledger, enqueue)) as base:
        head = (f"POST {paths.WEBHOOK} HTTP/1.1\r\n".encode() + b"Host: x\r\nTransfer-Encoding: chunked\r\n"
                b"X-Api-Key: " + API_KEY.encode() + b"\r\nX-Signature: 00\r\n\r\n")
        piece = b"x" * 65536
        answer, sent = exchange(int(base.rsplit(":", 1)[1]), head, iter(lambda: chunked(piece), b""),
                                limit=64 * MAX_BODY)
    assert status_and_json(answer) == (413, {"error": f"body over {MAX_BODY} bytes"})
    assert sent < 64 * MAX_BODY and queued == []
