"""What the Celery tasks run, one call each: the edge between `tasks/` and the domain.

One `Jobs` per worker process, built lazily (after the prefork pool forked) so every child opens
its own Redis and HTTP connections.
"""

from __future__ import annotations

from collections.abc import Sequence

from config import Settings
from worker.intake.resolve import resolve_file
from worker.runtime import Runtime
from worker.transfer.run import run_transfer


class Jobs:
    """The domain calls behind `archiver.archive_transfer` and `archiver.route_file`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._runtime: Runtime | None = None

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = Runtime.from_settings(self._settings)
        return self._runtime

    def archive_transfer(self, transfer_id: str) -> None:
        """Run one transfer if it is due and not running elsewhere (idempotent: the lease guards it)."""
        run_transfer(self.runtime, transfer_id)

    def route_file(self, file_id: str) -> Sequence[str]:
        """Find a file's destinations and record its transfers: the ids to queue."""
        return resolve_file(self.runtime, file_id)

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None
