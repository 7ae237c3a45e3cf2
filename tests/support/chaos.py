"""Crash-test helpers: process groups to kill or freeze, waiting on the ledger, reading JSON logs, and
a slow TCP proxy that keeps a download running long enough to be interrupted.

The archiver's processes are started in sessions of their own (`start_in_group`), so that a signal
reaches a Celery worker and its pool children at once, as when a container or a machine dies.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from worker.ledger.models import Transfer
from worker.ledger.store import Ledger

T = TypeVar("T")


# --------------------------------------------------------------------------- process groups


def start_in_group(args: list[str], env: dict[str, str], log_path: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """`python -m worker.edge.cli.app *args` as the leader of a new session (its own process group)."""
    with log_path.open("ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "worker.edge.cli.app", *args], env=env, stdout=log,
                                stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)


def signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    """Send `sig` to every process of `process`'s group (it leads one: `start_in_group`)."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass  # the whole group is gone already


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def kill_group(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGKILL the whole group and wait until every member is gone (and the leader reaped)."""
    signal_group(process, signal.SIGKILL)
    process.wait(timeout=timeout)
    wait_for(lambda: not group_alive(process.pid), timeout=timeout, message=f"process group {process.pid} to die")


def end_group(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Stop a group for good: wake it (it may be stopped), SIGTERM, then SIGKILL what is left."""
    if group_alive(process.pid):
        signal_group(process, signal.SIGCONT)
        signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        signal_group(process, signal.SIGKILL)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be refused
        pass


# --------------------------------------------------------------------------- waiting


def wait_for(probe: Callable[[], T | None], timeout: float, message: str, interval: float = 0.1) -> T:
    """Call `probe` until it returns something truthy and return that; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def wait_for_transfer(ledger: Ledger, transfer_id: str, check: Callable[[Transfer], bool], timeout: float,
                      message: str) -> Transfer:
    """The transfer as soon as `check` holds for it, read straight from the ledger."""

    def probe() -> Transfer | None:
        transfer = ledger.get(transfer_id)
        return transfer if transfer is not None and check(transfer) else None

    return wait_for(probe, timeout, f"{transfer_id}: {message}", interval=0.05)


# --------------------------------------------------------------------------- logs


def log_events(path: Path) -> list[dict[str, Any]]:
    """The JSON log lines of one process (Celery's banner and other plain lines are skipped)."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return found


def events_named(path: Path, name: str) -> list[dict[str, Any]]:
    return [event for event in log_events(path) if event.get("event") == name]


# --------------------------------------------------------------------------- a slow proxy


class SlowProxy:
    """A TCP proxy on 127.0.0.1 in front of `upstream` (``host:port``): requests pass at once, answers
    at most `rate` bytes per second per connection. Point a signed URL at it with `url_for` (the fake
    CDN's signature covers the path and expiry, not the host).

    One thread per direction of each connection; when either side closes, both are closed, so a
    killed client also ends the upstream's send. `rate` may be changed at any time (0: no limit)."""

    def __init__(self, upstream: str, rate: int) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.rate = rate
        self._chunk = max(4096, min(64 * 1024, rate // 32))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="slow-proxy", daemon=True).start()

    def url_for(self, url: str) -> str:
        """`url` with its host replaced by the proxy's."""
        return urlunsplit(urlsplit(url)._replace(netloc=self.host))

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            _close(sock)

    def __enter__(self) -> SlowProxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets.update((client, server))
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, throttled: bool) -> None:
        try:
            for data in _received(source, self._chunk):
                target.sendall(data)
                if throttled and self.rate:
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                _close(sock)
                with self._lock:
                    self._sockets.discard(sock)


def _received(sock: socket.socket, size: int) -> Iterator[bytes]:
    while data := sock.recv(size):
        yield data


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
