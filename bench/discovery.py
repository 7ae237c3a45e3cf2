"""The discovery benchmark: ``bench/discovery`` (installs what it needs) or ``python -m bench.discovery``.

What reconciliation costs at 2,000 / 20,000 / 50,000 calls in the `retention` window, against the
project's fake Stream with per-endpoint limits on, a real redis-server and the real ``archiver``
command (one process per run, as an operator runs it). For each size, on a fresh Redis and fake:

1. N calls are put straight into the fake's store (no HTTP), ended over the last 13 days and at
   least 2 h ago, one recording each;
2. ``archiver reconcile --full``: the first full run (it records all N files and queues them);
3. 1 % new calls are added (ended now, one recording each);
4. ``archiver reconcile``: the incremental run after them (the watermark is the full run's start).

Each run's Stream API requests per endpoint (the fake's count, 429s included), wall seconds, the
seconds the archiver waited for its budget (its own metric) and Redis memory (``used_memory``
before and after, the ledger's keys and their ``MEMORY USAGE``, the Celery queue's length: no
worker runs, so every queued transfer stays there as a message) go in one table.

Limits: every endpoint the archiver calls gets `LIMIT` requests a minute (per second: / 30), the
fake's minute a real 60 s. The archiver reads them from X-RateLimit-Limit only and spends half
(`api_share` 0.5). `LIMIT` is 10× the 1,000 a minute we assume for Stream (it publishes no numbers
for the video endpoints), i.e. time scaled by 10: where the budget binds, the seconds here × 10 are
the seconds at 1,000 a minute. Requests do not depend on the limits.

The fake's QueryCalls filters and sorts every call for each page (0.5 s a page at 50,000 calls),
and its ListRecordings scans every file (5 ms a request): here each query's result is kept while
the store does not change and files are indexed by call, so the fake's CPU does not drown the
archiver's (both share the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from config.celery import TRANSFER_QUEUE
from tests.fakestream import api as fake_api
from tests.fakestream import query as fake_query
from tests.fakestream.models import CallRecord, FileKind, StoredFile
from tests.fakestream.server import FakeStream, start_fake_stream
from tests.fakestream.store import Store
from tests.support.redis import RedisServer
from tests.support.settings import write_config
from worker.monitoring.stats import Stats

API_KEY, API_SECRET = "bench-key", "bench-secret-0123456789abcdef0123456789abcdef"
ASSUMED_STREAM_LIMIT = 1000  # per endpoint and minute: our assumption (stream-api.md §9: none published)
SCALE = 10
LIMIT = ASSUMED_STREAM_LIMIT * SCALE
ENDPOINTS = ("QueryCalls", "ListRecordings", "ListTranscriptions", "GetCall", "DeleteRecording",
             "DeleteTranscription")
RESULTS = Path(__file__).with_name("RESULTS.md")
console = Console(width=250)


# ------------------------------------------------------------------ the fake's QueryCalls, cached

_cache: dict[tuple[str, int], list[CallRecord]] = {}


def _cached_query_calls(calls: list[CallRecord], body: dict[str, Any]) -> fake_query.QueryPage:
    """fake_query.query_calls with each filter's sorted selection kept per store size (the bench only adds calls)."""
    filters = body.get("filter_conditions") or {}
    sort = fake_query._validate_sort(body.get("sort"))
    key = (json.dumps([filters, sort], sort_keys=True), len(calls))
    if key not in _cache:
        fake_query.matches(fake_query._PROBE, filters)
        _cache[key] = fake_query._sorted([c for c in calls if fake_query.matches(c, filters)], sort)
    selected, limit = _cache[key], fake_query._limit(body)
    offset = fake_query.decode_cursor(str(body["next"])) if body.get("next") else 0
    page = selected[offset:offset + limit]
    next_cursor = fake_query.encode_cursor(offset + limit) if offset + limit < len(selected) else None
    return fake_query.QueryPage(page, next_cursor, None)


fake_api.query_calls = _cached_query_calls  # type: ignore[assignment]


# ------------------------------------------------------------------ the fake's file listing, indexed by call

_add_file = Store.add_file


def _indexed_add_file(self: Store, stored: StoredFile) -> None:
    _add_file(self, stored)
    self.__dict__.setdefault("_bench_index", {}).setdefault((stored.call_cid, stored.kind), []).append(stored)


def _indexed_live_files(self: Store, call_cid: str, kind: FileKind) -> list[StoredFile]:
    """Store.live_files without scanning every file of every call (5 ms a request at 50,000 files)."""
    with self.lock:
        found = [f for f in self.__dict__.get("_bench_index", {}).get((call_cid, kind), [])
                 if id(f) not in self._deleted]
    return sorted(found, key=lambda f: (f.start_time, f.filename))


Store.add_file = _indexed_add_file  # type: ignore[method-assign]
Store.live_files = _indexed_live_files  # type: ignore[method-assign]


# ------------------------------------------------------------------ one size

@dataclass
class Run:
    """One archiver run: requests per endpoint, 429s, wall and waited seconds, Redis memory after."""

    requests: dict[str, int]
    limited: int
    seconds: float
    waited: float
    used_memory: int
    returncode: int

    @property
    def total(self) -> int:
        return sum(self.requests.values())


@dataclass
class SizeResult:
    calls: int
    memory_before: int
    full: Run
    incremental: Run
    new_calls: int
    ledger_keys: int
    ledger_bytes: int
    queued_messages: int


def seed(fake: FakeStream, count: int, prefix: str, first: datetime, last: datetime) -> None:
    """`count` calls with one recording each, straight into the fake's store, ended over [first, last]."""
    for n in range(count):
        ended = first + (last - first) * n / max(1, count)
        fake.add_call("default", f"{prefix}{n:06d}", ended_at=ended)
        fake.add_recording(f"default:{prefix}{n:06d}", b"%d" % n, end_time=ended)


def counts(fake: FakeStream) -> tuple[dict[str, int], int]:
    rates = {endpoint: fake.api_rate(endpoint) for endpoint in ENDPOINTS}
    return {e: r.requests for e, r in rates.items()}, sum(r.limited for r in rates.values())


def archiver(env: dict[str, str], client: redis.Redis, fake: FakeStream, *args: str) -> Run:
    before, limited = counts(fake)
    waited = sum(Stats(client).stream_waits().values())
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "worker.edge.cli.app", *args], env=env, capture_output=True, text=True,
                          check=False)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        console.print(f"[red]archiver {' '.join(args)} exited {done.returncode}[/]\n{done.stderr[-2000:]}")
    after, limited_after = counts(fake)
    return Run({e: after[e] - before[e] for e in ENDPOINTS if after[e] - before[e]}, limited_after - limited,
               seconds, sum(Stats(client).stream_waits().values()) - waited, int(client.info("memory")["used_memory"]),
               done.returncode)


def ledger_memory(client: redis.Redis) -> tuple[int, int]:
    """The ledger's keys (``archiver:*``) and the bytes MEMORY USAGE gives them."""
    keys, size = 0, 0
    for key in client.scan_iter(match="archiver:*", count=1000):
        keys += 1
        size += int(client.memory_usage(key, samples=0) or 0)
    return keys, size


def one_size(calls: int, workdir: Path) -> SizeResult:
    _cache.clear()
    server = RedisServer(workdir / f"redis-{calls}").start()
    fake = start_fake_stream(API_KEY, API_SECRET)
    try:
        client = redis.Redis.from_url(server.url)
        now = datetime.now(UTC)
        started = time.monotonic()
        seed(fake, calls, "c", now - timedelta(days=13), now - timedelta(hours=2))
        for endpoint in ENDPOINTS:
            fake.limit_api(endpoint, LIMIT)
        console.print(f"  {calls} calls seeded in {time.monotonic() - started:.1f} s", style="dim")
        config = write_config(workdir / "archiver.toml", {
            "default_storage": "disk", "download_hosts": [fake.cdn_host],
            "storages": [{"name": "disk", "storage_type": "local", "bucket": str(workdir / "archive"), "path": ""}]})
        env = {**os.environ, "STREAM_API_KEY": API_KEY, "STREAM_API_SECRET": API_SECRET, "REDIS_URL": server.url,
               "STREAM_BASE_URL": fake.base_url, "ARCHIVER_CONFIG": str(config), "ARCHIVER_LOG_LEVEL": "error",
               "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        memory_before = int(client.info("memory")["used_memory"])
        full = archiver(env, client, fake, "reconcile", "--full")
        console.print(f"  full run: {full.total} requests in {full.seconds:.1f} s", style="dim")
        new = max(1, calls // 100)
        moment = datetime.now(UTC)
        seed(fake, new, "n", moment - timedelta(minutes=1), moment)  # ended after the full run
        incremental = archiver(env, client, fake, "reconcile")
        console.print(f"  incremental run: {incremental.total} requests in {incremental.seconds:.1f} s", style="dim")
        keys, size = ledger_memory(client)
        queued = int(client.llen(TRANSFER_QUEUE))
        client.close()
        return SizeResult(calls, memory_before, full, incremental, new, keys, size, queued)
    finally:
        fake.stop()
        server.stop()


# ------------------------------------------------------------------ the table

def mib(size: int) -> str:
    return f"{size / 2**20:.1f}"


def per_endpoint(run: Run) -> str:
    short = {"QueryCalls": "Q", "ListRecordings": "LR", "ListTranscriptions": "LT"}
    return " ".join(f"{short.get(e, e)} {n}" for e, n in run.requests.items())


def table(results: list[SizeResult]) -> Table:
    table = Table("calls in window", "run", "requests", "by endpoint", "429s", "seconds", "s waiting for budget",
                  "requests / call", "Redis used_memory MiB (before → after)",
                  title=f"Discovery: limit {LIMIT}/min on every endpoint (Stream's assumed {ASSUMED_STREAM_LIMIT} "
                        f"× {SCALE}), api_share 0.5")
    for r in results:
        for name, run, basis in (("full", r.full, r.calls), (f"incremental after {r.new_calls} new", r.incremental,
                                                             r.new_calls)):
            table.add_row(f"{r.calls}", name, f"{run.total}", per_endpoint(run), f"{run.limited}",
                          f"{run.seconds:.1f}", f"{run.waited:.1f}", f"{run.total / basis:.2f}",
                          f"{mib(r.memory_before if name == 'full' else r.full.used_memory)} → {mib(run.used_memory)}")
    return table


def memory_table(results: list[SizeResult]) -> Table:
    table = Table("calls in window", "files in ledger", "ledger keys", "ledger MiB (MEMORY USAGE)",
                  "ledger bytes / file", "Celery messages waiting", "Redis used_memory MiB",
                  title="Redis after both runs (no worker ran: every transfer is still queued)")
    for r in results:
        files = r.calls + r.new_calls
        table.add_row(f"{r.calls}", f"{files}", f"{r.ledger_keys}", mib(r.ledger_bytes),
                      f"{r.ledger_bytes / files:.0f}", f"{r.queued_messages}", mib(r.incremental.used_memory))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="2000,20000,50000", help="calls in the window, comma-separated")
    parser.add_argument("--no-write", action="store_true", help="print only; do not append to bench/RESULTS.md")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-discovery-") as tmp:
        for calls in sizes:
            console.print(f"[bold]{calls} calls[/]")
            results.append(one_size(calls, Path(tmp)))
    tables = [table(results), memory_table(results)]
    for t in tables:
        console.print(t)
    if not args.no_write:
        record(tables)


def record(tables: list[Table]) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    capture = Console(width=250, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    for t in tables:
        capture.print(t)
    with RESULTS.open("a") as out:
        out.write(f"\n## Discovery (`bench/discovery`), {stamp}\n\n{os.cpu_count()} CPUs ({cpu}), Python "
                  f"{platform.python_version()}; limit {LIMIT}/min per endpoint, api_share 0.5.\n\n```\n"
                  f"{capture.export_text()}```\n")


if __name__ == "__main__":
    main()
