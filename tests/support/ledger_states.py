"""Ledger entries in any state, made through the ledger's own scripts, and the CLI run for real."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from tests.conftest import API_KEY, API_SECRET
from worker.clock import now_ms
from worker.files import StreamFile, transfer_id
from worker.ledger.models import NewTransfer, State
from worker.ledger.store import Ledger

DAY_MS = 86_400_000
LONG_AGO = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)  # Stream deleted these files long ago


def a_file(name: str, *, ended: datetime = LONG_AGO, url: str = "https://cdn.example/f.mp4?sig=SIGNED-URL-SECRET"
           ) -> StreamFile:
    return StreamFile(call_cid=f"default:{name}", kind="recording", filename=f"rec_{name}.mp4", url=url,
                      start_time=ended - timedelta(minutes=5), end_time=ended, session_id=f"s-{name}",
                      recording_type="composite", egress_id=f"eg-{name}")


def add(ledger: Ledger, name: str, state: State = "queued", *, storages: tuple[str, ...] = ("disk",),
        ended: datetime = LONG_AGO, days_ago: float = 0, **finish: Any) -> list[str]:
    """Record a file with one transfer per storage, moved to `state` through claim and finish, its
    last change `days_ago` days ago. Returns the transfer ids."""
    file = a_file(name, ended=ended)
    ids = [transfer_id(file.file_id, s) for s in storages]
    first = "skipped" if state == "skipped" else "queued"
    ledger.record(file, [NewTransfer(tid, s, f"default/{name}/{file.filename}", first) for tid, s in
                         zip(ids, storages, strict=True)], expires_at=ended + timedelta(days=14))
    for tid in ids:
        if state in ("transferring", "archived", "failed", "lost"):
            claim = ledger.claim(tid, "test-worker", 60_000)
            if state != "transferring":
                fields = {"bytes": 1234, "sha256": "ab" * 32} if state == "archived" else {"error": "refused"}
                assert ledger.finish(tid, claim.token, state, **(fields | finish))
        if days_ago:
            age(ledger, tid, days_ago)
    return ids


def add_waiting(ledger: Ledger, name: str, *, created: int | None = None, due: int | None = None) -> str:
    """Record file `name` as call-level routing does: no transfers, waiting for its routes (recorded
    at `created`, to be looked up at `due`, both ms; the ledger records it on Redis's clock, so
    `created` and `due` are written over its times afterwards). Returns the file id."""
    file = a_file(name)
    ledger.record(file, [], expires_at=file.end_time + timedelta(days=14), route_in_ms=0)
    if created is not None:
        ledger.redis.hset(f"{ledger.prefix}file:{file.file_id}", "created_at", created)
    if created is not None or due is not None:
        when = created if due is None else due
        ledger.redis.zadd(f"{ledger.prefix}unrouted", {file.file_id: when})
    return file.file_id


def age(ledger: Ledger, tid: str, days_ago: float) -> None:
    """Make a transfer's last change `days_ago` days old (its hash and its state index agree)."""
    when = now_ms() - int(days_ago * DAY_MS)
    state = ledger.redis.hget(f"{ledger.prefix}transfer:{tid}", "state")
    ledger.redis.hset(f"{ledger.prefix}transfer:{tid}", "updated_at", when)
    ledger.redis.zadd(f"{ledger.prefix}state:{state}", {tid: when})


def snapshot(client: redis.Redis) -> dict[str, Any]:
    """Every key with its type and content, to compare the ledger before and after."""
    found: dict[str, Any] = {}
    for key in sorted(client.scan_iter("*")):
        kind = client.type(key)
        content: Any = {"hash": client.hgetall, "set": client.smembers, "string": client.get,
                        "list": lambda k: client.lrange(k, 0, -1),
                        "zset": lambda k: client.zrange(k, 0, -1, withscores=True)}[kind](key)
        found[key] = (kind, content)
    return found


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def run_cli(redis_url: str, *args: str, cwd: Path | None = None, **env: str) -> Run:
    """`archiver ARGS…` as a real process against the test's Redis."""
    environ = {**os.environ, "STREAM_API_KEY": API_KEY, "STREAM_API_SECRET": API_SECRET, "REDIS_URL": redis_url,
               "ARCHIVER_LOG_FORMAT": "json", "COLUMNS": "250"}
    environ.pop("ARCHIVER_CONFIG", None)  # only the test's own, given in `env`
    environ.update(env)
    done = subprocess.run([sys.executable, "-m", "worker.edge.cli.app", *args], env=environ, capture_output=True,
                          text=True, timeout=120, cwd=cwd, check=False)
    return Run(done.returncode, done.stdout, done.stderr)


def run_clis(redis_url: str, commands: Sequence[Sequence[str]], cwd: Path | None = None, **env: str) -> list[Run]:
    """`run_cli` of each command, a few at a time, in their order: only for commands that do not depend
    on each other (reads, refusals). Each run is mostly the interpreter starting; the suite runs one
    test at a time, so together they use the cores one run at a time leaves idle."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda args: run_cli(redis_url, *args, cwd=cwd, **env), commands))
