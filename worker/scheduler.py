"""The sweep: queue every transfer that is due and not running (and every file waiting for its
routes), one scheduler at a time.

It covers what the broker can lose: a webhook whose task was never queued, a message dropped
by a crash, a worker that died holding a lease, and every retry whose wait has passed.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis
import structlog

from config import ArchiveConfig
from worker.ledger.models import Enqueue
from worker.ledger.store import Ledger
from worker.notify.outbox import Outbox

log = structlog.get_logger(__name__)
BATCH = 500


def sweep_once(ledger: Ledger, archive: ArchiveConfig, enqueue: Enqueue) -> int:
    """Queue every due transfer, every file due for routing and every notification due for delivery,
    now; return how many.

    Transfers are handed over soonest-to-expire first, so a large backlog never starves a file
    that Stream is about to delete (the queue is first in, first out)."""
    redispatch_ms = int(archive.redispatch_after.total_seconds() * 1000)
    total = 0
    for index in ("unrouted", "due", "notify:due"):
        while True:
            ids = ledger.take_due(redispatch_ms, limit=BATCH, index=index)
            if index == "due":
                ids = ledger.soonest_to_expire(ids)
            if ids:
                enqueue(ids)
                total += len(ids)
            if len(ids) < BATCH:
                break
    forget_delivered_notifications(ledger, archive)
    return total


def forget_delivered_notifications(ledger: Ledger, archive: ArchiveConfig) -> int:
    """Delivered notifications are kept for `retention` (shown by `archiver notifications list`), then
    forgotten, so the outbox does not grow without end."""
    if not archive.notify and not ledger.redis.exists(ledger.keys.notify_state("delivered")):
        return 0
    return Outbox(ledger).forget_delivered(int(archive.retention.total_seconds() * 1000))


@dataclass
class PeriodicJob:
    """Something the scheduler starts every `every` seconds (reconciliation, deletion), first at start.

    It runs in a thread of its own, so a long pass (a reconciliation over thousands of calls) never
    holds up the sweep; a pass still running when the next is due is not started twice."""

    name: str
    every: float
    run: Callable[[], object]
    next_at: float = 0.0
    _thread: threading.Thread | None = None

    def run_if_due(self) -> None:
        if time.monotonic() < self.next_at or (self._thread is not None and self._thread.is_alive()):
            return
        self.next_at = time.monotonic() + self.every
        self._thread = threading.Thread(target=self._run_once, name=f"job-{self.name}", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run_once(self) -> None:
        try:
            self.run()
        except Exception as exc:  # noqa: BLE001 - one failed pass must not end the scheduler
            log.error("periodic_job_failed", job=self.name, error=str(exc))


def next_wake(now: float, next_sweep: float, jobs: Sequence[PeriodicJob]) -> float:
    """Seconds until the next sweep or the next job due (a job still running is not started again, so
    it does not count), whichever comes first: a job's period shorter than `sweep_every` is kept."""
    soonest = min([next_sweep, *(job.next_at for job in jobs if not job.running)])
    return max(0.01, soonest - now)


def run_scheduler(ledger: Ledger, archive: ArchiveConfig, enqueue: Enqueue, stop: threading.Event,
                  jobs: Sequence[PeriodicJob] = ()) -> None:
    """Sweep every `sweep_every`, and run `jobs` when due (on their own periods, shorter ones too),
    while holding the scheduler lock, until `stop` is set. Jobs run in threads of their own (see
    `PeriodicJob`)."""
    token = uuid.uuid4().hex
    every = archive.sweep_every.total_seconds()
    ttl_ms = int(every * 3000) + 5000
    leading, next_sweep = False, 0.0
    log.info("scheduler_started", sweep_every_s=every, jobs=[job.name for job in jobs])
    while not stop.is_set():
        failed = True  # until the pass ends well: then wait `every`, not spin on a due job
        try:
            holds = ledger.acquire_lock(token, ttl_ms)
            if holds != leading:
                log.info("scheduler_lock_acquired" if holds else "scheduler_standby")
                leading = holds
            if holds and time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + every
                queued = sweep_once(ledger, archive, enqueue)
                if queued:
                    log.info("sweep_queued_transfers", count=queued)
            if holds:
                for job in jobs:
                    job.run_if_due()
            failed = False
        except redis.RedisError as exc:
            log.warning("sweep_skipped", reason=f"ledger unavailable: {exc}")
        except Exception as exc:  # noqa: BLE001 - a broker hiccup must not end the scheduler
            log.error("sweep_failed", error=str(exc))
        stop.wait(every if failed or not leading else next_wake(time.monotonic(), next_sweep, jobs))
    for job in jobs:
        job.wait(timeout=30)
    try:
        ledger.release_lock(token)
    except redis.RedisError:
        pass
