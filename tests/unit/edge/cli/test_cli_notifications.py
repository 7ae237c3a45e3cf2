"""`archiver notifications list|retry` as real processes against a real Redis ledger."""

from __future__ import annotations

import json
from pathlib import Path

from config import load_settings
from tests.support.ledger_states import run_cli
from tests.support.settings import write_config
from tests.unit.ledger.test_ledger import a_file, record
from worker.ledger.store import Ledger
from worker.notify.outbox import Outbox, endpoint_id, routes_json

URL = "https://hooks.example/archiver?token=abc"


def failed_delivery(ledger: Ledger, tmp_path: Path) -> tuple[str, str]:
    """A file.archived whose one delivery was given up on; (the config path, the delivery id)."""
    config = write_config(tmp_path / "archiver.toml", {"notify": [{"url": URL, "secret": "s"}],
                                                       "notify_retry_for": "0s"})
    archive = load_settings({"STREAM_API_KEY": "k", "STREAM_API_SECRET": "s", "ARCHIVER_CONFIG": str(config)}).archive
    notified = Ledger(ledger.redis, outbox=routes_json(archive))
    tid = record(notified, a_file())
    assert notified.finish(tid, notified.claim(tid, "w", 60_000).token, "archived", bytes=1, sha256="00" * 32)
    outbox = Outbox(notified)
    [did] = outbox.due_for("file.archived", tid)
    assert outbox.finish(did, outbox.claim(did, 60_000).token, ok=False, status=500, error="HTTP 500: oops") == "failed"
    return str(config), did


def test_list_shows_each_delivery_its_endpoints_host_and_attempts_and_failed_ones_alone(
        ledger: Ledger, redis_url: str, tmp_path: Path) -> None:
    config, did = failed_delivery(ledger, tmp_path)
    listed = run_cli(redis_url, "notifications", "list", "--failed", "--json", ARCHIVER_CONFIG=config)
    assert listed.returncode == 0, listed.stderr
    [row] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (row["id"], row["state"], row["type"], row["endpoint"]) == (did, "failed", "file.archived", endpoint_id(URL))
    assert row["endpoint_host"] == "hooks.example" and row["history"][0]["status"] == 500
    assert run_cli(redis_url, "notifications", "list", "--state", "pending", "--json",
                   ARCHIVER_CONFIG=config).stdout == ""
    table = run_cli(redis_url, "notifications", "list", ARCHIVER_CONFIG=config)
    assert table.returncode == 0 and "hooks.example" in table.stdout and "token=abc" not in table.stdout
    assert run_cli(redis_url, "notifications", "list", "--state", "odd", ARCHIVER_CONFIG=config).returncode == 2


def test_retry_makes_a_failed_delivery_pending_and_due_and_refuses_others(
        ledger: Ledger, redis_url: str, tmp_path: Path) -> None:
    config, did = failed_delivery(ledger, tmp_path)
    event = did.split(":")[0]
    result = run_cli(redis_url, "notifications", "retry", event, ARCHIVER_CONFIG=config)
    assert result.returncode == 0, result.stderr
    assert f"queued {did}" in result.stdout
    assert Outbox(ledger).ids("pending") == [did] and ledger.redis.zscore(ledger.keys.notify_due, did) is not None
    again = run_cli(redis_url, "notifications", "retry", did, "ev_nope", ARCHIVER_CONFIG=config)
    assert again.returncode == 1 and "pending, not failed" in again.stderr and "ev_nope: no such" in again.stderr
