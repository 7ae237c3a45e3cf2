"""Keeping a claimed transfer's lease alive while it runs, and noticing when it is lost."""

from __future__ import annotations

import contextvars
import threading
import time
from types import TracebackType

import structlog

from worker.errors import LeaseLost
from worker.ledger import Ledger

log = structlog.get_logger(__name__)


class Heartbeat:
    """Renews the lease every third of its length in a background thread.

    `check()` raises LeaseLost once another worker took the transfer over, or once the lease
    could not be renewed before it ran out (Redis unreachable): then this copy must stop writing.
    """

    def __init__(self, ledger: Ledger, transfer_id: str, epoch: int, lease_ms: int) -> None:
        self._ledger, self._id, self._epoch, self._lease_ms = ledger, transfer_id, epoch, lease_ms
        self._valid_until = time.monotonic() + lease_ms / 1000
        self._lost = False
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

    @property
    def lost(self) -> bool:
        """True once another worker holds the transfer, or the lease ran out unrenewed."""
        return self._lost or time.monotonic() > self._valid_until

    def check(self) -> None:
        if self._lost:
            raise LeaseLost(f"transfer {self._id} was taken over by another worker")
        if time.monotonic() > self._valid_until:
            raise LeaseLost(f"lease of transfer {self._id} ran out before it could be renewed")

    def _run(self) -> None:
        interval = self._lease_ms / 3000
        while not self._stop.wait(interval):
            started = time.monotonic()
            try:
                renewed = self._ledger.heartbeat(self._id, self._epoch, self._lease_ms)
            except Exception as exc:  # noqa: BLE001 - Redis hiccups must not kill the transfer
                log.warning("lease_renewal_failed", transfer_id=self._id, error=str(exc))
                continue
            if not renewed:
                self._lost = True
                return
            self._valid_until = started + self._lease_ms / 1000
