"""A request body limit in plain ASGI, whatever the web framework's version.

`BodyLimit` answers 413 for a request whose Content-Length declares more than the limit, before
any of the body is read, and for one whose body grows past the limit while it streams in (chunked,
no Content-Length, or a length that lies): the count runs as each piece arrives, the request is cut
off at the first piece past the limit, and the rest is never read. Every route that reads a body
goes through it. The answer is JSON, ``{"error": "body over N bytes"}``; if the app had already
started its answer, that answer stands.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    """Raised from `receive` when the body passes the limit; `BodyLimit` turns it into the 413."""


class BodyLimit:
    """Cut a request body off at `limit` bytes with a 413 (see the module's docstring)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _declared_length(scope) > self.limit:
            await self._refuse(send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(f"body over {self.limit} bytes")
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)
        except BaseExceptionGroup as group:  # a task group in the app may wrap it
            _, others = group.split(BodyTooLarge)
            if others is not None:
                raise
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"error": f"body over {self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _declared_length(scope: Scope) -> int:
    """The Content-Length the request declares, or -1 (none, or not a plain number: the server's to judge)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            return int(value) if value.isdigit() else -1
    return -1
