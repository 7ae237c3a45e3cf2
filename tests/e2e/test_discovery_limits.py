"""Discovery at scale inside Stream's rate limits (issue 12's "Done when"): `archiver backfill` and
`archiver reconcile --full` of 2,000 calls, real processes on a real Redis, against a fake Stream
that limits every endpoint per minute (and per second, the minute's limit / 30) as Stream does.

The fake's minute is a real 60 s: the archiver's budget knows only what the answers' X-RateLimit-*
headers say. ListRecordings and ListTranscriptions get 6,000 a minute: the two runs make 4,000
requests to each, more than the half (3,000) the archiver may spend in a minute, so the second run
waits for the first run's requests to leave the sliding minute (about 75 s in all). The per-second
half is kept as the archiver counts it; arrivals at the fake jitter by a request, so the test holds
them to Stream's own per-second limit.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from tests.e2e.conftest import Archiver, local_storage
from tests.fakestream.server import FakeStream

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CALLS = 2000
LIMITS = {"QueryCalls": 120, "ListRecordings": 6000, "ListTranscriptions": 6000, "GetCall": 600,
          "DeleteRecording": 600, "DeleteTranscription": 600}


def run(service: Archiver, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.edge.cli.app", *args], env=service.env, capture_output=True,
                          text=True, timeout=200, cwd=service.log_dir, check=False)


def test_backfill_and_a_full_run_of_2000_calls_spend_at_most_half_of_every_limit(
        archiver: Callable[..., Archiver], fake: FakeStream, redis_url: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    for n in range(CALLS):  # ended over the last 11 days (none at risk), one recording each
        ended = now - timedelta(days=11) + timedelta(days=11) * n / CALLS
        fake.add_call("default", f"c{n:05d}", ended_at=ended)
        fake.add_recording(f"default:c{n:05d}", b"r%d" % n, end_time=ended)
    for endpoint, per_minute in LIMITS.items():
        fake.limit_api(endpoint, per_minute)
    service = archiver([local_storage(tmp_path / "archive")])
    service.env["ARCHIVER_LOG_LEVEL"] = "warning"

    backfill = run(service, "backfill", "--since", "14d")
    assert backfill.returncode == 0, backfill.stderr[-3000:]
    full = run(service, "reconcile", "--full")
    assert full.returncode == 0, full.stderr[-3000:]

    rates = {endpoint: fake.api_rate(endpoint) for endpoint in LIMITS}
    for endpoint, rate in rates.items():
        assert rate.limited == 0, (endpoint, rate)
        assert rate.max_per_minute <= LIMITS[endpoint] // 2, (endpoint, rate)
        assert rate.max_per_second <= LIMITS[endpoint] // 30, (endpoint, rate)  # Stream's own (half: ±1 jitter)
    assert rates["ListRecordings"].requests == rates["ListTranscriptions"].requests == 2 * CALLS  # every call, twice
    assert rates["QueryCalls"].requests >= 2 * CALLS // 100
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    assert client.hget("archiver:reconcile:marks", "watermark") is not None  # the full run completed
    assert not client.exists("archiver:backfill:reconcile-full")  # and dropped its checkpoint
    assert len(service.transfers()) == CALLS
