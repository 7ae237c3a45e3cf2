"""Keeping a claimed transfer's lease alive while it runs, and noticing when it is lost or stuck.

The lease, not a time limit, guards a transfer: a transfer may run for hours as long as it moves
bytes and renews its lease. What catches a hung one:

* every network read and write has its own timeout (downloads: `transfer.read_timeout`; the
  storage SDKs: their read/connect timeouts and retries), so a stalled connection raises;
* should a transfer hang anyway (no byte moved for `stall_ms`, e.g. a call without a timeout),
  the heartbeat stops renewing: the lease runs out, the sweep hands the transfer to another
  worker, and this copy, fenced out, can no longer write a result (`check()` raises LeaseLost as
  soon as it gets control again).
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

import structlog

from worker.errors import LeaseLost
from worker.ledger.store import Ledger

log = structlog.get_logger(__name__)


class Heartbeat:
    """Renews the lease every third of its length in a background thread, while the transfer moves.

    `check()` raises LeaseLost once another worker took the transfer over, once the lease could
    not be renewed before it ran out (Redis unreachable), or once the transfer stalled (no
    `progress()` for `stall_ms`): then this copy must stop writing. `token` is the claim's
    fencing token (`Ledger.claim`).
    """

    def __init__(self, ledger: Ledger, transfer_id: str, token: str, lease_ms: int,
                 stall_ms: int | None = None) -> None:
        self._ledger, self._id, self._token, self._lease_ms = ledger, transfer_id, token, lease_ms
        self._stall_s = None if stall_ms is None else stall_ms / 1000
        self._valid_until = time.monotonic() + lease_ms / 1000
        self._moved_at = time.monotonic()
        self._unwatched = 0  # > 0: inside a long call whose own timeouts bound it
        self._lost = False
        self._stalled = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run,),  # log context
                                        name=f"heartbeat-{transfer_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def progress(self) -> None:
        """The transfer moved (bytes read or written, a step done): it is not stuck."""
        self._moved_at = time.monotonic()

    @contextmanager
    def unwatched(self) -> Iterator[None]:
        """A step that moves no byte through this process for long (a store copying the source
        itself) but whose every request has a timeout: not a stall while it runs."""
        self._unwatched += 1
        try:
            yield
        finally:
            self._unwatched -= 1
            self.progress()

    @property
    def lost(self) -> bool:
        """True once another worker holds the transfer, the lease ran out unrenewed, or it stalled."""
        return self._lost or self._stalled or time.monotonic() > self._valid_until

    def check(self) -> None:
        if self._lost:
            raise LeaseLost(f"transfer {self._id} was taken over by another worker")
        if self._stalled:
            raise LeaseLost(f"transfer {self._id} stalled: its lease was left to run out")
        if time.monotonic() > self._valid_until:
            raise LeaseLost(f"lease of transfer {self._id} ran out before it could be renewed")

    def note_commit(self, size: int, sha256: str) -> None:
        """Note in the ledger the bytes about to be committed (`Ledger.note_commit`), right before the
        commit: a later attempt that finds them at its key knows they are its own. Raises LeaseLost
        when the transfer was taken over (then nothing may be committed) or the lease is gone."""
        self.check()
        if not self._ledger.note_commit(self._id, self._token, size, sha256):
            self._lost = True
            self.check()

    def save_upload(self, state_json: str) -> None:
        """Keep in the ledger what the store durably holds of this attempt's upload (`Ledger.save_upload`;
        '' deletes it). Raises LeaseLost when the transfer was taken over (nothing written) or the lease is gone."""
        self.check()
        if not self._ledger.save_upload(self._id, self._token, state_json):
            self._lost = True
            self.check()

    def _run(self) -> None:
        interval = self._lease_ms / 3000
        while not self._stop.wait(interval):
            started = time.monotonic()
            idle = started - self._moved_at
            if self._stall_s is not None and not self._unwatched and idle > self._stall_s:
                self._stalled = True
                log.error("transfer_stalled", transfer_id=self._id, idle_s=round(idle, 1),
                          action="lease no longer renewed; another worker takes the transfer over")
                return
            try:
                renewed = self._ledger.heartbeat(self._id, self._token, self._lease_ms)
            except Exception as exc:  # noqa: BLE001 - Redis hiccups must not kill the transfer
                log.warning("lease_renewal_failed", transfer_id=self._id, error=str(exc))
                continue
            if not renewed:
                self._lost = True
                return
            self._valid_until = started + self._lease_ms / 1000
