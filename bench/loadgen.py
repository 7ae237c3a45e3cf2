"""An open-loop HTTP/1.1 load generator on asyncio streams, for the webhook intake case.

Request i is planned at ``start + i / rate``; a dispatcher hands it to the pool at that moment
whether or not earlier requests have been answered, and its latency runs from the planned time to
the last byte of the answer. A request that waits for a free connection (the receiver stalled)
therefore counts its wait: no coordinated omission. Requests are pre-built bytes and answers are
parsed just enough (status, Content-Length) to keep the client's own CPU small: on a 2-core machine
it shares the CPUs with the receiver.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Outcome:
    """Per request: status (0: connection error) and latency in seconds from its planned time."""

    status: list[int]
    latency: list[float]
    wall: float = 0.0
    errors: list[str] = field(default_factory=list)


def build_request(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    """The POST's bytes on the wire (keep-alive, Content-Length)."""
    parts = urlsplit(url)
    lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_answer(reader: asyncio.StreamReader) -> int:
    """Read one response; its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def _connection(host: str, port: int, queue: asyncio.Queue[int | None], requests: Sequence[bytes],
                      planned: Sequence[float], outcome: Outcome) -> None:
    """One keep-alive connection taking requests from `queue` until it gets None."""
    reader, writer = await asyncio.open_connection(host, port)
    while (index := await queue.get()) is not None:
        try:
            writer.write(requests[index])
            outcome.status[index] = await _read_answer(reader)
        except (OSError, asyncio.IncompleteReadError) as exc:
            outcome.errors.append(f"request {index}: {exc!r}")
            writer.close()
            reader, writer = await asyncio.open_connection(host, port)
        outcome.latency[index] = time.perf_counter() - planned[index]
    writer.close()


async def _offer(url: str, requests: Sequence[bytes], rate: float, connections: int) -> Outcome:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    outcome = Outcome([0] * len(requests), [0.0] * len(requests))
    queue: asyncio.Queue[int | None] = asyncio.Queue()
    start = time.perf_counter() + 0.2  # the connections open first
    planned = [start + i / rate for i in range(len(requests))]
    pool = [asyncio.create_task(_connection(host, port, queue, requests, planned, outcome))
            for _ in range(connections)]
    for index, moment in enumerate(planned):
        delay = moment - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait(index)
    for _ in pool:
        queue.put_nowait(None)
    await asyncio.gather(*pool)
    outcome.wall = time.perf_counter() - start
    return outcome


def offer(url: str, requests: Sequence[bytes], rate: float, connections: int = 64) -> Outcome:
    """Send `requests` (built by `build_request`) at `rate` per second, open loop."""
    return asyncio.run(_offer(url, requests, rate, connections))
