"""What the Celery tasks run, one call each: the edge between `tasks/` and the domain.

One `Jobs` per worker process, built lazily (after the prefork pool forked) so every child opens
its own Redis and HTTP connections.
"""

from __future__ import annotations

from collections.abc import Sequence

from config import Settings
from worker.intake.resolve import resolve_file
from worker.notify.delivery import Notifier
from worker.runtime import Runtime
from worker.transfer.run import run_transfer


class Jobs:
    """The domain calls behind `archiver.archive_transfer` and `archiver.route_file`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._runtime: Runtime | None = None
        self._notifier: Notifier | None = None

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = Runtime.from_settings(self._settings)
        return self._runtime

    @property
    def notifier(self) -> Notifier:
        if self._notifier is None:
            self._notifier = Notifier(self.runtime.ledger, self._settings.archive)
        return self._notifier

    def archive_transfer(self, transfer_id: str) -> Sequence[str]:
        """Run one transfer if it is due and not running elsewhere (idempotent: the lease guards it);
        the notifications its end announced, to queue at once (the sweep would find them too)."""
        run_transfer(self.runtime, transfer_id)
        return self.notifier.due_after_transfer(transfer_id)

    def deliver_notification(self, delivery_id: str) -> None:
        """One attempt at a notification if it is due and no other worker is at it."""
        self.notifier.deliver(delivery_id)

    def route_file(self, file_id: str) -> Sequence[str]:
        """Find a file's destinations and record its transfers: the ids to queue."""
        return resolve_file(self.runtime, file_id)

    def close(self) -> None:
        if self._notifier is not None:
            self._notifier.close()
            self._notifier = None
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None
