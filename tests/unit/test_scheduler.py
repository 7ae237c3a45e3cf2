"""The sweep (worker/scheduler.py) against a real Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from tests.unit.ledger.test_ledger import END, a_file, record
from worker.files import transfer_id
from worker.ledger.models import NewTransfer
from worker.ledger.store import Ledger
from worker.scheduler import PeriodicJob, run_scheduler, sweep_once


def test_sweep_queues_what_is_due_once_per_redispatch_period(ledger: Ledger, make_settings: Any) -> None:
    archive = make_settings(redispatch_after="1h").archive
    due = record(ledger, a_file("a.mp4"), dispatch_in_ms=-1)
    record(ledger, a_file("b.mp4"), dispatch_in_ms=3_600_000)
    queued: list[str] = []
    assert sweep_once(ledger, archive, queued.extend) == 1
    assert sweep_once(ledger, archive, queued.extend) == 0
    assert queued == [due]


def test_sweep_goes_through_more_than_one_batch(ledger: Ledger, make_settings: Any) -> None:
    archive = make_settings().archive
    for n in range(1203):
        record(ledger, a_file(f"{n}.mp4"))
    queued: list[str] = []
    assert sweep_once(ledger, archive, queued.extend) == 1203
    assert len(set(queued)) == 1203


def run_for(ledger: Ledger, archive: Any, seconds: float, jobs: Sequence[PeriodicJob] = ()) -> list[str]:
    queued: list[str] = []
    stop = threading.Event()

    def enqueue(ids: Sequence[str]) -> None:
        queued.extend(ids)

    thread = threading.Thread(target=run_scheduler, args=(ledger, archive, enqueue, stop, jobs))
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join(timeout=5)
    return queued


def test_a_standby_scheduler_does_not_sweep(ledger: Ledger, make_settings: Any) -> None:
    archive = make_settings(sweep_every="0.1s").archive
    record(ledger, a_file())
    assert ledger.acquire_lock("someone-else", 60_000)
    assert run_for(ledger, archive, 0.5) == []
    ledger.release_lock("someone-else")
    assert len(run_for(ledger, archive, 0.5)) == 1


def test_due_transfers_go_out_soonest_to_expire_first(ledger: Ledger, make_settings: Any) -> None:
    archive = make_settings().archive
    ids = []
    for days in (13, 2, 9, 1):
        file = a_file(f"{days}.mp4")
        tid = transfer_id(file.file_id, "local")
        ledger.record(file, [NewTransfer(tid, "local", "k")], expires_at=END + timedelta(days=days))
        ids.append((days, tid))
    queued: list[str] = []
    sweep_once(ledger, archive, queued.extend)
    assert queued == [tid for _, tid in sorted(ids)]


def test_a_job_whose_period_is_shorter_than_the_sweeps_runs_on_its_own_period(ledger: Ledger,
                                                                              make_settings: Any) -> None:
    """audit_log_every may be shorter than sweep_every: the scheduler wakes for the job, not only at sweeps."""
    archive = make_settings(sweep_every="10s").archive
    runs: list[float] = []
    job = PeriodicJob("short", 0.1, lambda: runs.append(time.monotonic()))
    record(ledger, a_file(), dispatch_in_ms=-1)
    assert len(run_for(ledger, archive, 1.0, [job])) == 1  # the sweep at the start
    assert len(runs) >= 6, runs
    assert all(0.08 <= later - earlier for earlier, later in zip(runs, runs[1:], strict=False))  # its own period
