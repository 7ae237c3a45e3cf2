"""Kept connections: a worker process's idle download connections, reused by its next request to the
same place, so many small files (transcriptions, reports, frame images) do not pay a connection (and a
TLS handshake) each.

A connection is kept only when its answer was read to the end and the server did not say it would
close it, and only for the same scheme, host (as the URL names it), port and one-file permission
(`PoolKey`): a new host, or a new port, always gets a new connection, opened by the address guard
(`worker.transfer.url_guard.AddressGuard`), which checks the addresses of every connection it opens.
A reused connection goes to an address the guard checked when it opened it. Idle connections older
than `IDLE_SECONDS`, or that the server closed meanwhile, are dropped rather than reused.
"""

from __future__ import annotations

import http.client
import select
import threading
import time

IDLE_SECONDS = 20.0  # servers drop idle keep-alive connections (CDNs after 60 s or more): leave before they do
PoolKey = tuple[str, str, int, bool]  # scheme, host, port, allowed by a one-file permission


class ConnectionPool:
    """Idle connections by `PoolKey`, at most `per_host` of each (thread-safe)."""

    def __init__(self, per_host: int) -> None:
        self._per_host = per_host
        self._idle: dict[PoolKey, list[tuple[float, http.client.HTTPConnection]]] = {}
        self._lock = threading.Lock()

    def take(self, key: PoolKey) -> http.client.HTTPConnection | None:
        """An idle connection for `key` that still looks alive, or None (then open a new one)."""
        stale: list[http.client.HTTPConnection] = []
        found = None
        now = time.monotonic()
        with self._lock:
            idle = self._idle.get(key, [])
            while idle and found is None:
                since, connection = idle.pop()
                if now - since < IDLE_SECONDS and not _dropped(connection):
                    found = connection
                else:
                    stale.append(connection)
        for connection in stale:
            connection.close()
        return found

    def give(self, key: PoolKey, connection: http.client.HTTPConnection) -> None:
        """Keep `connection` (its answer fully read) for the next request to `key`, or close it when
        `per_host` are kept already."""
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self._per_host:
                idle.append((time.monotonic(), connection))
                return
        connection.close()

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle = [connection for kept in self._idle.values() for _, connection in kept]
            self._idle.clear()
        for connection in idle:
            connection.close()


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """True when an idle connection is readable: the server closed it (or sent what nobody asked for)."""
    sock = connection.sock
    if sock is None:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))
