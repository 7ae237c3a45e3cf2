"""Workers and a scheduler whose clocks are minutes apart: real processes under libfaketime (Debian's
`libfaketime`, preloaded into `archiver worker|scheduler`; Celery's prefork children inherit it),
redis-server, moto_server behind a counting proxy, the fake Stream behind a slow proxy.

Leases, waits and max_concurrency slots are judged by Redis's clock, so what must hold: no live lease
stolen (one claim, one download, one upload per file) and never more transfers of the limited
storage running than its max_concurrency.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.chaos.conftest import PREFIX, ChaosArchiver, deliver_slowly, stored_sha256
from tests.e2e.conftest import s3_storage
from tests.fakestream.server import FakeStream
from tests.support.chaos import SlowProxy, events_named, log_events, start_in_group, wait_for
from tests.support.chaos_report import ChaosReport
from tests.support.faketime import skewed
from tests.support.faultproxy import FaultProxy, delay
from tests.support.moto import s3_client

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024
FAST, SLOW = timedelta(minutes=3), -timedelta(minutes=3)
# name: (clock skew, pool processes); the fast one has a process free to take what the sweep sends
WORKERS = {"worker-slow": (SLOW, 1), "worker-right": (timedelta(0), 1), "worker-fast": (FAST, 2)}
LIMIT = 2  # below the workers' four pool processes


def start_skewed(service: ChaosArchiver, name: str, skew: timedelta, *args: str) -> None:
    """`archiver *args` (its process group) with its wall clock `skew` off (monotonic clock left alone)."""
    env = {**service.env, **skewed(skew)}
    service.running[name] = start_in_group(list(args), env, service.log_of(name), service.log_dir)


def clock_offsets(path: Path, name: str) -> list[float]:
    """Each `name` event's logged time minus the real time now (the events are past: a right clock
    gives a few seconds below zero; +3 min, about +180; -3 min, about -180)."""
    now = datetime.now(UTC)
    return [(datetime.fromisoformat(e["timestamp"]) - now).total_seconds() for e in events_named(path, name)]


def test_workers_and_a_scheduler_minutes_apart_steal_no_lease_and_keep_the_limit(
    chaos_archiver: Callable[..., ChaosArchiver], slow_cdn: Callable[[int], SlowProxy], fake: FakeStream,
    moto_server: str, bucket: str, chaos_report: ChaosReport,
) -> None:
    proxy = slow_cdn(3 * MiB)  # each file takes ~2-3 s, longer than the sweep period
    with FaultProxy(moto_server) as storage_proxy:
        storage_proxy.add(delay(0.3, method="PUT"))
        storage = {**s3_storage(storage_proxy.url, bucket), "max_concurrency": LIMIT}
        # A 10 s lease (the chaos suite's is 4 s): a heartbeat late on a loaded machine must not let a
        # lease run out honestly, which this test would take for a stolen one; 3 min of skew still
        # dwarfs it, so a clock-judged lease would be stolen all the same.
        service = chaos_archiver([storage], proxy, call_storage_key="", transfer_lease="10s")
        url = service.start_web()  # the receiver keeps the right time
        for name, (skew, processes) in WORKERS.items():
            start_skewed(service, name, skew, "worker", "--concurrency", str(processes))
        recordings = [fake.add_recording(f"default:skew-{n}", os.urandom(6 * MiB + n)) for n in range(6)]

        samples: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.02):
                samples.append(len(service.ledger.ids("transferring")))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        try:
            for recording in recordings:
                assert deliver_slowly(fake, url, recording, proxy).status_code == 202
            start_skewed(service, "scheduler", FAST, "scheduler")
            archived = wait_for(lambda: [t for t in service.ledger.iter_transfers("archived")]
                                if len(service.ledger.ids("archived")) == len(recordings) else None,
                                90, "every file archived")
        finally:
            stop.set()
            sampler.join()
        recovered = time.monotonic() - started
        uploads = Counter(unquote(r.target.split("?")[0]) for r in storage_proxy.requests
                          if r.method == "POST" and r.target.endswith("?uploads"))

    # the clocks really were minutes apart, in the Celery pool children that ran the transfers too
    assert all(offset > 100 for offset in clock_offsets(service.log_of("scheduler"), "scheduler_started"))
    for name, (skew, _) in WORKERS.items():
        offsets = clock_offsets(service.log_of(name), "transfer_started")
        assert all(abs(offset - skew.total_seconds()) < 100 for offset in offsets), (name, offsets)

    assert max(samples) <= LIMIT, f"max_concurrency {LIMIT} exceeded: {max(samples)} transfers at once"
    for transfer in archived:
        assert (transfer.attempts, transfer.epoch, transfer.error) == (1, 1, None), transfer
    for recording in recordings:
        assert fake.downloads_of(recording) == 1, f"{recording.filename} downloaded more than once"
    keys = {f"/{bucket}/{PREFIX}{t.key}": t for t in archived}
    assert {k: n for k, n in uploads.items() if k in keys} == dict.fromkeys(keys, 1), "one upload per file"
    client = s3_client(moto_server)
    try:
        for transfer in archived:
            assert stored_sha256(client, bucket, transfer.key) == transfer.sha256
    finally:
        client.close()
    stolen = [e for name in WORKERS for e in log_events(service.log_of(name))
              if e.get("event") in ("transfer_lease_lost", "transfer_result_fenced_out")]
    assert stolen == []
    chaos_report.record("workers' clocks 3 min slow / right / 3 min fast, scheduler 3 min fast", sent=len(recordings),
                        archived=len(archived), duplicates=sum(uploads[k] for k in keys) - len(keys),
                        recover_seconds=recovered)
