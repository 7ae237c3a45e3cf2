"""A storage's `max_concurrency` holds across every worker process: counted in the ledger.

Real processes: redis-server, `archiver web`, two `archiver worker` (Celery, prefork, -c 2 each),
`archiver scheduler`; moto_server behind a proxy that slows every PUT, so transfers take long
enough to overlap if the limit did not hold.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
import redis

from tests.e2e.conftest import Archiver, s3_storage
from tests.fakestream.server import FakeStream
from tests.support.faultproxy import FaultProxy, delay
from worker.ledger.store import Ledger

pytestmark = pytest.mark.e2e


def _intervals(logs: str) -> dict[str, list[datetime]]:
    """transfer id → [started, archived] times, from the workers' JSON log lines."""
    seen: dict[str, list[datetime]] = {}
    for line in logs.splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        if entry.get("event") in ("transfer_started", "recording_archived"):
            seen.setdefault(entry["transfer_id"], []).append(datetime.fromisoformat(entry["timestamp"]))
    return seen


def test_six_files_through_two_workers_never_run_more_than_one_at_a_time_on_a_limited_storage(
    archiver: Callable[..., Archiver], fake: FakeStream, moto_server: str, bucket: str, redis_url: str
) -> None:
    with FaultProxy(moto_server) as proxy:
        service = archiver([{**s3_storage(proxy.url, bucket), "max_concurrency": 1}])
        url = service.start_web()
        service.start_worker("worker", concurrency=2)
        service.start_worker("worker2", concurrency=2)
        service.start_scheduler()
        proxy.add(delay(0.5, method="PUT"))
        files = [fake.add_recording(f"default:c{n}", os.urandom(256 * 1024 + n)) for n in range(6)]

        ledger = Ledger(redis.Redis.from_url(redis_url, decode_responses=True))
        samples: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.02):
                samples.append(ledger.redis.zcount(ledger.keys.running("s3"), f"({ledger.now_ms()}", "+inf"))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(lambda f: fake.deliver(url, f).status_code, files))
        assert statuses == [202] * 6
        try:
            archived = service.wait_for_states(6, timeout=60)
        finally:
            stop.set()
            sampler.join()
            ledger.redis.close()

    assert max(samples) == 1, "never more than one transfer of the storage held a lease"
    assert all(t["attempts"] == 1 and t["error"] is None for t in archived), "refusals count no attempt"
    intervals = sorted(_intervals(service.logs()).values())
    assert len(intervals) == 6 and all(len(pair) == 2 for pair in intervals)
    for before, after in zip(intervals, intervals[1:], strict=False):
        assert before[1] <= after[0], f"transfers overlapped: {before} and {after}"
    assert '"transfer_waiting_for_storage"' in service.logs(), "the limit was reached and waited on"

