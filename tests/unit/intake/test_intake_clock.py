"""A receiver whose clock is minutes off records every time on Redis's clock (INTAKE takes TIME).

Real processes: `archiver web` under Debian's libfaketime, redis-server; `archiver transfers retry`
under it too (RETRY).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import API_KEY, API_SECRET
from tests.support.faketime import skewed
from tests.support.ledger_states import add, run_cli
from tests.support.processes import ArchiverProcesses
from tests.support.samples import fresh_sample
from tests.support.settings import write_config
from worker.intake.webhook import sign
from worker.ledger.store import Ledger

SKEWS = [timedelta(minutes=10), -timedelta(minutes=10)]
REDISPATCH_MS = 30_000
SLACK_MS = 5_000  # the test's own steps between Redis's TIME and the ledger's writes



def start_receiver(tmp_path: Path, redis_url: str, skew: timedelta, **config: Any) -> ArchiverProcesses:
    path = write_config(tmp_path / "archiver.toml", {
        "default_storage": "disk", "redispatch_after": f"{REDISPATCH_MS // 1000}s", **config,
        "storages": [{"name": "disk", "storage_type": "local", "bucket": str(tmp_path / "archive"), "path": ""}]})
    env = {"STREAM_API_KEY": API_KEY, "STREAM_API_SECRET": API_SECRET, "REDIS_URL": redis_url,
           "ARCHIVER_CONFIG": str(path), "ARCHIVER_BROKER_URL": "redis://127.0.0.1:9/0", **skewed(skew)}
    processes = ArchiverProcesses(env, tmp_path / "run")
    processes.start_web()
    return processes


def post(url: str, body: bytes) -> httpx.Response:
    headers = {"X-API-KEY": API_KEY, "X-SIGNATURE": sign(body, API_SECRET), "Content-Type": "application/json"}
    return httpx.post(url, content=body, headers=headers, timeout=10)


def near(value: float, expected: int) -> bool:
    return abs(value - expected) <= SLACK_MS


@pytest.mark.parametrize("skew", SKEWS, ids=["10-min-fast", "10-min-slow"])
def test_a_skewed_receiver_records_due_times_on_redis_clock(tmp_path: Path, redis_url: str, ledger: Ledger,
                                                             skew: timedelta) -> None:
    receiver = start_receiver(tmp_path, redis_url, skew, call_storage_key="")  # routes at intake
    try:
        response = post(receiver.webhook_url, fresh_sample("call.recording_ready.json"))
        redis_now = ledger.now_ms()
    finally:
        receiver.stop_all()
    assert response.status_code == 202, response.text
    (tid,) = response.json()["transfers"]
    stored = ledger.redis.hgetall(f"archiver:transfer:{tid}")
    for name in ("created_at", "updated_at", "next_attempt_at"):
        assert near(int(stored[name]), redis_now), f"{name} {int(stored[name]) - redis_now} ms off Redis's clock"
    due = ledger.redis.zscore(ledger.keys.due, tid)
    assert due is not None and near(due, redis_now + REDISPATCH_MS), f"due {due - redis_now} ms from Redis's now"
    assert near(ledger.redis.zscore("archiver:transfers", tid) or 0, redis_now)
    file = ledger.file(response.json()["file_id"])
    assert near(int(file["created_at"]), redis_now)


@pytest.mark.parametrize("skew", SKEWS, ids=["10-min-fast", "10-min-slow"])
def test_a_skewed_receiver_schedules_call_lookups_on_redis_clock(tmp_path: Path, redis_url: str, ledger: Ledger,
                                                                 skew: timedelta) -> None:
    receiver = start_receiver(tmp_path, redis_url, skew)  # call-level routing: the file waits for its routes
    try:
        response = post(receiver.webhook_url, fresh_sample("call.recording_ready.json"))
        redis_now = ledger.now_ms()
    finally:
        receiver.stop_all()
    assert response.status_code == 202, response.text
    file_id = response.json()["file_id"]
    assert near(int(ledger.file(file_id)["created_at"]), redis_now)
    lookup = ledger.redis.zscore("archiver:unrouted", file_id)
    assert lookup is not None and near(lookup, redis_now + REDISPATCH_MS), f"lookup {lookup - redis_now} ms away"


def test_a_retry_by_a_skewed_command_is_due_on_redis_clock(ledger: Ledger, redis_url: str) -> None:
    (tid,) = add(ledger, "r1", "failed", ended=datetime.now(UTC) - timedelta(hours=1))
    result = run_cli(redis_url, "transfers", "retry", tid, ARCHIVER_BROKER_URL="redis://127.0.0.1:9/0",
                     **skewed(timedelta(minutes=10)))
    redis_now = ledger.now_ms()
    assert result.returncode == 0, result.stderr
    stored = ledger.redis.hgetall(f"archiver:transfer:{tid}")
    assert stored["state"] == "queued"
    for name in ("updated_at", "next_attempt_at"):
        assert near(int(stored[name]), redis_now), f"{name} {int(stored[name]) - redis_now} ms off Redis's clock"
    due = ledger.redis.zscore(ledger.keys.due, tid)
    assert due is not None and near(due, redis_now)

