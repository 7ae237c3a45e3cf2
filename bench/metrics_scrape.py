"""What one /metrics scrape costs Redis with a large ledger (issue 13: target under 5 ms per scrape).

Seeds a fresh ledger with N transfers (most archived, some queued and failed, as in a ledger that has
run for a while), starts a real `archiver web` with a given `metrics_cache`, scrapes /metrics at a
steady rate (Prometheus every 15 s, but several Prometheus servers, replicas and curious people add
up: the issue's attack was ~8 scrapes/s), and reads Redis's own accounting (INFO commandstats,
microseconds per command) before and after: the Redis time the scrapes cost, divided by the scrapes.

    .venv/bin/python -m bench.metrics_scrape [--transfers 100000] [--seconds 20] [--rate 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import redis

from bench.service import service
from worker.edge.web import paths
from worker.files import StreamFile, transfer_id
from worker.ledger.models import NewTransfer
from worker.ledger.store import Ledger

SHARES = {"archived": 0.9, "failed": 0.02}  # the rest stays queued


def redis_usec(client: redis.Redis) -> int:
    """Microseconds Redis has spent executing commands so far (all commands, Lua scripts included)."""
    return sum(int(stats["usec"]) for stats in client.info("commandstats").values())


def seed(ledger: Ledger, count: int) -> None:
    """`count` transfers to one storage: recorded as intake records them, then most marked archived
    and some failed in the ledger's hashes and state indexes (the rest stay queued)."""
    end = datetime.now(UTC) - timedelta(hours=1)
    start = time.monotonic()
    for n in range(count):
        file = StreamFile(call_cid=f"default:c{n // 3}", kind="recording", filename=f"rec_default_c{n}_{n}.mp4",
                          url=f"https://cdn.example/{n}?sig=x", start_time=end - timedelta(minutes=5), end_time=end)
        tid = transfer_id(file.file_id, "disk")
        ledger.record(file, [NewTransfer(tid, "disk", f"default/c{n}/{file.filename}")],
                      expires_at=end + timedelta(days=14))
    pipe = ledger.redis.pipeline(transaction=False)
    queued = ledger.redis.zrange(ledger.keys.state("queued"), 0, -1, withscores=True)
    archived, failed = int(count * SHARES["archived"]), int(count * SHARES["failed"])
    for i, (raw, score) in enumerate(queued[:archived + failed]):
        tid, state = raw.decode(), "archived" if i < archived else "failed"
        pipe.hset(ledger.keys.transfer(tid), mapping={"state": state, "bytes": 50_000_000})
        pipe.zrem(ledger.keys.state("queued"), tid)
        pipe.zadd(ledger.keys.state(state), {tid: score})
        pipe.zrem(ledger.keys.due, tid)
        if state == "archived":
            pipe.zrem(ledger.keys.expiry, tid)
    pipe.execute()
    print(f"seeded {count:,} transfers in {time.monotonic() - start:.0f} s", flush=True)


def scrape(url: str, seconds: float, rate: float) -> tuple[int, list[float]]:
    """Scrape `url` every 1/`rate` s for `seconds`; the count and each answer's latency (s)."""
    latencies = []
    with httpx.Client(timeout=30) as client:
        deadline, interval = time.monotonic() + seconds, 1 / rate
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            began = time.monotonic()
            assert client.get(url).status_code == 200
            latencies.append(time.monotonic() - began)
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
    return len(latencies), latencies


def case(transfers: int, cache: str, seconds: float, rate: float) -> str:
    with tempfile.TemporaryDirectory(prefix="archiver-metrics-bench-") as tmp:
        workdir = Path(tmp)
        storage = {"name": "disk", "storage_type": "local", "bucket": str(workdir / "archive"), "path": ""}
        with service(workdir, storage, {"metrics_cache": cache}) as svc:
            seed(Ledger(svc.redis), transfers)
            url = svc.processes.start_web().replace(paths.WEBHOOK, paths.METRICS)
            httpx.get(url, timeout=60)  # the first scrape builds what later ones reuse
            before = redis_usec(svc.redis)
            count, latencies = scrape(url, seconds, rate)
            spent_ms = (redis_usec(svc.redis) - before) / 1000
    latencies.sort()
    p50, p99 = latencies[len(latencies) // 2], latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return (f"| {transfers:,} | {cache} | {count} ({rate:g}/s) | {spent_ms / count:.2f} | "
            f"{p50 * 1000:.1f} | {p99 * 1000:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=float, default=8)
    args = parser.parse_args()
    rows = [case(args.transfers, cache, args.seconds, args.rate) for cache in ("0s", "10s")]
    print("| transfers | metrics_cache | scrapes | Redis ms per scrape | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
