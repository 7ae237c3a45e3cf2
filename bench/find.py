"""`archiver find` at a million files: ``python -m bench.find`` (or ``bench/run --cases find``).

1. A fresh redis-server is filled with N archived files (default 1,000,000) in the shapes intake and
   a worker leave them (the file's hash with its custom terms, its transfer set, the transfer's hash,
   the ``transfers`` and ``state:archived`` indexes, the key owner, the session sets, the call's
   ``call_files`` set), written with pipelines for speed: a ledger from before the index.
   Spread: `CALLS` calls over `DAYS` days (UTC), N / CALLS files each (three sessions of recordings,
   transcriptions and a stats report), call types weighted as `CALL_TYPES`, and two custom fields:
   ``tenant`` (one of `TENANTS`: ~N / TENANTS files each) and ``ticket`` (one per call).
2. The migration to schema 2 (`worker.ledger.index.index_existing`, what an upgrade runs) builds the
   index; its time, and Redis's ``used_memory`` before and after, are the index's cost.
3. `worker.ledger.search.find` (what the CLI and the status page call) is timed for one call, one
   day, one custom value, and a call type within one day: each `ROUNDS` times on a different random
   target, with the CLI's default limit (100) and with none (every archived file of it); the table
   gives the median and the 90th percentile, and how many rows a search returned (median).

The machine is shared (2 cores, other work running): latencies are wall time of this process, the
Redis server on the same machine.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from tests.support.redis import RedisServer
from worker.clock import to_ms
from worker.files import Kind, StreamFile, transfer_id
from worker.ledger.index import index_existing
from worker.ledger.search import FindQuery, find
from worker.ledger.store import Ledger

CALLS = 50_000
DAYS = 365
TENANTS = 200
CALL_TYPES = (("default", 0.7), ("audio_room", 0.2), ("livestream", 0.1))
KINDS: tuple[Kind, ...] = ("recording", "recording", "recording", "transcription", "transcription", "stats_report")
ROUNDS = 21
DAY_MS = 86_400_000
STORAGE = "s3"
SEED_BATCH = 2000  # files per pipeline
console = Console(width=200)


@dataclass(frozen=True)
class Call:
    call_type: str
    call_id: str
    started: datetime
    tenant: str
    ticket: str

    @property
    def cid(self) -> str:
        return f"{self.call_type}:{self.call_id}"


def make_calls(count: int, rng: random.Random, last_day: datetime) -> list[Call]:
    types, weights = zip(*CALL_TYPES, strict=True)
    return [Call(rng.choices(types, weights)[0], f"c{n:06d}",
                 last_day - timedelta(days=rng.randrange(DAYS), seconds=rng.randrange(86_400 - 4 * 3600)),
                 f"t{rng.randrange(TENANTS):03d}", f"T-{100_000 + n}") for n in range(count)]


def _file_of(call: Call, n: int) -> StreamFile:
    """The call's n-th file: three sessions an hour apart, kinds in turn."""
    kind = KINDS[n % len(KINDS)]
    start = call.started + timedelta(hours=n % 3, minutes=n)
    ext = {"recording": "mp4", "transcription": "jsonl", "stats_report": "json"}[kind]
    return StreamFile(call_cid=call.cid, kind=kind, filename=f"{kind}_{call.call_id}_{n}.{ext}",
                      url=f"https://cdn.example/{call.call_id}/{n}?Signature=x", start_time=start,
                      end_time=start + timedelta(minutes=40), session_id=f"s{n % 3}", egress_id=f"eg{n}")


def seed(client: redis.Redis, calls: list[Call], files_per_call: int, prefix: str = "archiver:") -> int:
    """Write every call's files as intake and a worker leave them (no index but ``call_files``)."""
    pipe, written = client.pipeline(transaction=False), 0
    for call in calls:
        terms = json.dumps(sorted([f"tenant={call.tenant}", f"ticket={call.ticket}"]))
        for n in range(files_per_call):
            file = _file_of(call, n)
            _write_file(pipe, prefix, file, terms)
            written += 1
            if written % SEED_BATCH == 0:
                pipe.execute()
    pipe.execute()
    return written


def _write_file(pipe: Any, p: str, file: StreamFile, terms: str) -> None:
    fid, tid = file.file_id, transfer_id(file.file_id, STORAGE)
    start, end = to_ms(file.start_time), to_ms(file.end_time)
    created, done, expires = end + 60_000, end + 120_000, end + 14 * DAY_MS
    key = f"{file.call_type}/{file.call_id}/{file.filename}"
    pipe.hset(p + "file:" + fid, mapping={
        "call_cid": file.call_cid, "kind": file.kind, "filename": file.filename, "url": file.url,
        "session_id": file.session_id or "", "egress_id": file.egress_id or "", "start_time": start,
        "end_time": end, "expires_at": expires, "url_at": created, "created_at": created, "routing": "resolved",
        "custom": terms})
    pipe.sadd(p + f"file:{fid}:transfers", tid)
    pipe.hset(p + "transfer:" + tid, mapping={
        "id": tid, "file_id": fid, "state": "archived", "attempts": 1, "epoch": 1, "created_at": created,
        "updated_at": done, "next_attempt_at": created, "call_cid": file.call_cid, "kind": file.kind,
        "filename": file.filename, "session_id": file.session_id or "", "storage": STORAGE, "key": key,
        "expires_at": expires, "bytes": 52_428_800, "sha256": "ab" * 32})
    pipe.zadd(p + "transfers", {tid: created})
    pipe.zadd(p + "state:archived", {tid: done})
    pipe.hset(p + "keyowner:" + STORAGE, key, fid)
    pipe.sadd(p + f"session:{file.call_cid}:{file.session_id}", fid)
    pipe.sadd(p + f"sessions:{file.call_cid}", file.session_id or "")
    pipe.sadd(p + f"call_files:{file.call_id}", fid)


@dataclass(frozen=True)
class Timing:
    search: str
    limit: int | None
    median_ms: float
    p90_ms: float
    rows: int


def time_searches(ledger: Ledger, name: str, queries: Callable[[random.Random], FindQuery],
                  limit: int | None, rng: random.Random) -> Timing:
    times, rows = [], []
    for _ in range(ROUNDS):
        query = queries(rng)
        began = time.perf_counter()
        found = find(ledger, query, limit)
        times.append((time.perf_counter() - began) * 1000)
        rows.append(len(found.matches))
    times.sort()
    return Timing(name, limit, statistics.median(times), times[int(len(times) * 0.9)], int(statistics.median(rows)))


def run(files: int, calls_count: int) -> tuple[Table, Table]:
    rng, last_day = random.Random(16), datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    calls = make_calls(calls_count, rng, last_day)
    workdir = Path(tempfile.mkdtemp(prefix="archiver-find-bench-"))
    server = RedisServer(workdir / "redis").start()
    try:
        client = server.client()
        ledger = Ledger(client)
        base = int(client.info("memory")["used_memory"])
        began = time.perf_counter()
        written = seed(client, calls, files // calls_count)
        seeded_s, before = time.perf_counter() - began, int(client.info("memory")["used_memory"])
        console.print(f"  seeded {written:,} archived files in {seeded_s:.0f} s", style="dim")
        began = time.perf_counter()
        indexed = index_existing(ledger)
        migration_s, after = time.perf_counter() - began, int(client.info("memory")["used_memory"])
        console.print(f"  indexed {indexed:,} files in {migration_s:.0f} s", style="dim")
        cost = Table("files", "calls", "ledger MiB (no index)", "index MiB", "index bytes / file",
                     "index MiB per 1M files", "migration s", "migration files / s",
                     title=f"find: the index at {written:,} files (Redis used_memory)")
        per_file = (after - before) / written
        cost.add_row(f"{written:,}", f"{calls_count:,}", f"{(before - base) / 2**20:,.0f}",
                     f"{(after - before) / 2**20:,.0f}", f"{per_file:.0f}", f"{per_file * 1e6 / 2**20:,.0f}",
                     f"{migration_s:.0f}", f"{written / migration_s:,.0f}")
        days = [last_day - timedelta(days=d) for d in range(DAYS)]

        def one_day(r: random.Random) -> tuple[int, int]:
            day = to_ms(r.choice(days))
            return day, day + DAY_MS

        searches: list[tuple[str, Callable[[random.Random], FindQuery]]] = [
            ("--call CID", lambda r: FindQuery(call=r.choice(calls).cid)),
            ("--since D --until D (one day)", lambda r: FindQuery(*(None, None), *one_day(r))),
            ("--custom tenant=… (~N/200 files)", lambda r: FindQuery(custom=(f"tenant={r.choice(calls).tenant}",))),
            ("--custom ticket=… (one call)", lambda r: FindQuery(custom=(f"ticket={r.choice(calls).ticket}",))),
            ("--call-type default + one day", lambda r: FindQuery(None, "default", *one_day(r))),
        ]
        latency = Table("search", "limit", "median ms", "p90 ms", "rows (median)",
                        title=f"find: latency at {written:,} files (medians of {ROUNDS}, a random target each)")
        for name, queries in searches:
            for limit in (100, None):
                t = time_searches(ledger, name, queries, limit, rng)
                latency.add_row(t.search, "none" if t.limit is None else str(t.limit), f"{t.median_ms:.1f}",
                                f"{t.p90_ms:.1f}", str(t.rows))
        client.close()
        return cost, latency
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=CALLS)
    args = parser.parse_args()
    for table in run(args.files, args.calls):
        console.print(table)


if __name__ == "__main__":
    main()
