"""Stream's rate limits across real processes: one budget in Redis for all of them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis

from tests.conftest import API_KEY, API_SECRET
from tests.fakestream.server import FakeStream
from tests.support.settings import write_config
from worker.monitoring.stats import Stats

GET_CALL = "GET /api/v2/video/call/{type}/{id}"


def test_two_processes_together_spend_at_most_half_of_a_small_limit(fake: FakeStream, redis_url: str,
                                                                     tmp_path: Path) -> None:
    """GetCall limited to 60 a minute (2 a second): two processes hammering it for 5 s send at most
    1 a second and 30 a minute together (api_share 0.5, the default), none refused, and keep going;
    the metrics count every request."""
    fake.add_call("default", "hammered")
    fake.limit_api("GetCall", 60)
    config = write_config(tmp_path / "archiver.toml", {"storages": [
        {"name": "disk", "storage_type": "local", "bucket": str(tmp_path / "archive")}]})
    env = {**os.environ, "STREAM_API_KEY": API_KEY, "STREAM_API_SECRET": API_SECRET, "REDIS_URL": redis_url,
           "STREAM_BASE_URL": fake.base_url, "ARCHIVER_CONFIG": str(config), "ARCHIVER_LOG_LEVEL": "error"}
    command = [sys.executable, "-m", "tests.e2e.stream_hammer", "5", "default", "hammered"]
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    made = [int(p.communicate(timeout=60)[0].strip() or -1) for p in processes]
    assert [p.returncode for p in processes] == [0, 0]
    rate = fake.api_rate("GetCall")
    assert rate.limited == 0 and rate.max_per_second == 1 and rate.max_per_minute <= 30
    assert rate.requests == sum(made) and rate.requests >= 4 and min(made) >= 1
    counts = Stats(redis.Redis.from_url(redis_url, decode_responses=True)).pairs("stats:stream_requests")
    assert counts == {(GET_CALL, "ok"): rate.requests}
