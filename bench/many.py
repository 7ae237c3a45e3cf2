"""Case 3: many files. N recordings of M MB each, announced by signed webhooks, archived end to end
by real Celery worker processes plus the scheduler, with 1, 2 and 4 worker processes.

Each round is fresh: its own redis-server (ledger and broker), fake Stream and bucket (or
directory). The workers and the scheduler are started and idle before the clock starts; then
all webhooks are POSTed to the real `archiver web` from a pool of threads (16 at a time, so
delivery is never the bottleneck), and the round ends when the ledger's ``state:archived`` index
holds all N. Time runs from the first webhook sent to the last transfer archived (the highest
score in that index: the moment the worker recorded it).

CPU seconds (user + system, /proc) over the same span: each worker's process tree (Celery's
prefork children do the transfers), the receiver, redis-server, the destination server, and this
process (the fake Stream's CDN threads and the webhook sender). Machine CPU is /proc/stat's busy
time over the span, in cores. Verified: N transfers archived, none in any other state, and the
destination holds exactly N objects of the file's size.
"""

from __future__ import annotations

import argparse
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from bench import cpu
from bench.destinations import Destination, LocalDisk, S3rver, make_workdir
from bench.large import make_file
from bench.service import PREFIX, Delivery, Service, ledger_states, service
from tests.support.processes import wait_until

SENDERS = 16
MB = 1_000_000


@dataclass(frozen=True)
class ManyResult:
    """One round: `workers` worker processes of `concurrency` each archiving `files` files."""

    destination: str
    workers: int
    concurrency: int
    files: int
    file_bytes: int
    seconds: float  # first webhook sent → last transfer archived
    send_seconds: float  # first webhook sent → last webhook answered
    worker_cpu: float
    web_cpu: float
    redis_cpu: float
    destination_cpu: float
    bench_cpu: float  # this process: the fake's CDN and the webhook sender
    machine_cpu: float  # core-seconds busy on the machine over the measured span (any process)
    span: float  # the measured span: first webhook sent → the poll that saw the last one archived
    cores: int

    @property
    def machine_cores(self) -> float:
        return self.machine_cpu / self.span

    @property
    def other_cpu(self) -> float:
        """Core-seconds the machine spent on processes outside this benchmark (it is shared)."""
        ours = self.worker_cpu + self.web_cpu + self.redis_cpu + self.destination_cpu + self.bench_cpu
        return self.machine_cpu - ours

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.files * self.file_bytes / MB / self.seconds

    @property
    def limit(self) -> str:
        """What bounds this round, from the CPU figures."""
        others = f", {self.other_cpu / self.machine_cpu:.0%} of it other processes" if self.other_cpu > 0 else ""
        if self.machine_cores >= 0.9 * self.cores:
            return f"CPU: {self.machine_cores:.2f} of {self.cores} cores busy{others}"
        if self.destination_cpu / self.seconds >= 0.85:
            return "destination server (one core)"
        if self.worker_cpu / self.seconds >= 0.85 * self.workers * self.concurrency:
            return "worker processes (each a core)"
        return f"latency (machine {self.machine_cores:.2f} of {self.cores} cores busy{others})"


class Round:
    """One destination bucket (or directory) per round, and how to check what it holds."""

    def __init__(self, destination: Destination, name: str) -> None:
        self.destination, self.name = destination, name

    def storage(self) -> dict[str, Any]:
        storage = self.destination.storage()
        if isinstance(self.destination, S3rver):
            self.destination.client.create_bucket(Bucket=self.name)
            return {**storage, "bucket": self.name}
        root = Path(storage["bucket"]) / self.name
        root.mkdir(parents=True)
        return {**storage, "bucket": str(root)}

    def sizes(self) -> list[int]:
        """The size of every object stored this round."""
        if isinstance(self.destination, S3rver):
            pages = self.destination.client.get_paginator("list_objects_v2").paginate(Bucket=self.name)
            return [obj["Size"] for page in pages for obj in page.get("Contents", [])]
        root = Path(self.destination.storage()["bucket"]) / self.name
        return [path.stat().st_size for path in root.rglob("*") if path.is_file()]

    def remove(self) -> None:
        """Delete what the round stored (the disk is finite: 1,000 × 5 MB per round)."""
        if isinstance(self.destination, S3rver):
            client = self.destination.client
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.name):
                keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
                if keys:
                    client.delete_objects(Bucket=self.name, Delete={"Objects": keys})
            client.delete_bucket(Bucket=self.name)
        else:
            shutil.rmtree(Path(self.destination.storage()["bucket"]) / self.name)

    def server_pids(self) -> list[int]:
        """The destination server's processes (s3rver: found by its data directory); none for a disk."""
        if isinstance(self.destination, S3rver):
            return cpu.pids_running(str(self.destination.workdir / "s3rver"))
        return []


def send_all(url: str, deliveries: list[Delivery]) -> list[int]:
    """POST every delivery, `SENDERS` at a time; their status codes."""
    limits = httpx.Limits(max_connections=SENDERS, max_keepalive_connections=SENDERS)
    with httpx.Client(timeout=30, limits=limits) as client, ThreadPoolExecutor(SENDERS) as pool:
        return list(pool.map(lambda d: client.post(url, content=d.body, headers=d.headers).status_code, deliveries))


def start_workers(svc: Service, workers: int, concurrency: int) -> list[int]:
    """Start the worker processes and wait until each one's pool is up; their pids."""
    names = [f"worker-{i}" for i in range(workers)]
    for name in names:
        svc.processes.start_worker(name, concurrency)
    for name in names:
        wait_until(lambda name=name: " ready" in (svc.processes.log_dir / f"{name}.log").read_text(errors="replace"),  # type: ignore[misc]
                   timeout=60, message=f"{name} ready")
    return [svc.pid(name) for name in names]


def wait_archived(svc: Service, files: int, timeout: float) -> None:
    """Until the ledger holds `files` archived transfers (fails early if any failed)."""
    client = svc.redis

    def done() -> bool:
        if client.zcard(f"{PREFIX}state:failed"):
            raise RuntimeError(f"transfers failed: {ledger_states(client)}")
        return int(client.zcard(f"{PREFIX}state:archived")) >= files

    wait_until(done, timeout=timeout, interval=0.05, message=f"{files} transfers archived")


def last_archived(svc: Service) -> float:
    """Unix time the last transfer was recorded archived (its score in the index, in ms)."""
    newest = svc.redis.zrange(f"{PREFIX}state:archived", -1, -1, withscores=True)
    return float(newest[0][1]) / 1000


def verify(svc: Service, bucket: Round, files: int, size: int) -> None:
    states = ledger_states(svc.redis)
    if states != {"archived": files}:
        raise RuntimeError(f"ledger after the round: {states}, expected {{'archived': {files}}}")
    sizes = bucket.sizes()
    if len(sizes) != files or set(sizes) != {size}:
        raise RuntimeError(f"destination holds {len(sizes)} objects of sizes {sorted(set(sizes))[:5]}, "
                           f"expected {files} of {size}")


def run_round(destination: Destination, source: Path, files: int, workers: int, concurrency: int,
              workdir: Path) -> ManyResult:
    """One measured round (see the module docstring)."""
    bucket = Round(destination, f"many-{workers}x{concurrency}-{time.monotonic_ns() % 10**9}")
    size = source.stat().st_size
    with service(workdir / bucket.name, bucket.storage()) as svc:
        url = svc.processes.start_web()
        worker_pids = start_workers(svc, workers, concurrency)
        svc.processes.start_scheduler()
        deliveries = svc.deliveries(files, source, bucket.name)
        web, redis_pid, servers = svc.pid("web"), svc.redis_server.process.pid, bucket.server_pids()  # type: ignore[union-attr]
        groups = {"workers": worker_pids, "web": [web], "redis": [redis_pid], "destination": servers}
        before = {name: cpu.tree_cpu(pids) for name, pids in groups.items()}
        machine, own = cpu.MachineCpu.now(), time.process_time()
        started = time.time()
        statuses = send_all(url, deliveries)
        sent = time.time() - started
        if statuses.count(202) != files:
            raise RuntimeError(f"webhook answers: { {s: statuses.count(s) for s in set(statuses)} }")
        wait_archived(svc, files, timeout=max(120.0, files * size / MB / 2))
        after = {name: cpu.tree_cpu(pids) for name, pids in groups.items()}
        bench_cpu, machine_after, wall = time.process_time() - own, cpu.MachineCpu.now(), time.time() - started
        seconds = last_archived(svc) - started
        verify(svc, bucket, files, size)
    bucket.remove()
    spent = {name: after[name] - before[name] for name in groups}
    return ManyResult(destination.name, workers, concurrency, files, size, seconds, sent, spent["workers"],
                      spent["web"], spent["redis"], spent["destination"], bench_cpu,
                      machine_after.busy - machine.busy, wall, cpu.cores())


def make_destination(name: str, workdir: Path) -> Destination:
    destination: Destination = S3rver(workdir) if name == "s3rver" else LocalDisk(workdir)
    destination.start()
    return destination


def run(files: int = 1000, mb: float = 5, workers: tuple[int, ...] = (1, 2, 4), concurrency: int = 1,
        destination: str = "s3rver", workdir: Path | None = None) -> list[ManyResult]:
    """Case 3: one round per worker count, all to one destination server started for the case."""
    own = workdir is None
    workdir = workdir or make_workdir()
    source = make_file(workdir / "recording.mp4", int(mb * MB))
    target = make_destination(destination, workdir)
    try:
        return [run_round(target, source, files, count, concurrency, workdir) for count in workers]
    finally:
        target.stop()
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


def table(results: list[ManyResult]) -> Table:
    first = results[0]
    out = Table(title=f"Case 3: {first.files} files of {first.file_bytes / MB:g} MB each, webhooks → "
                      f"archived, to {first.destination}")
    for column in ("workers × concurrency", "seconds", "files/s", "MB/s", "webhooks sent in s",
                   "worker CPU s", "web CPU s", "redis CPU s", "dest. server CPU s", "bench+fake CPU s",
                   "other procs CPU s", "machine cores busy", "limited by"):
        out.add_column(column, justify="left" if column == "limited by" else "right")
    for r in results:
        out.add_row(f"{r.workers} × {r.concurrency}", f"{r.seconds:.1f}", f"{r.files_per_s:.1f}",
                    f"{r.mb_per_s:.1f}", f"{r.send_seconds:.1f}", f"{r.worker_cpu:.1f}", f"{r.web_cpu:.1f}",
                    f"{r.redis_cpu:.1f}", f"{r.destination_cpu:.1f}", f"{r.bench_cpu:.1f}",
                    f"{r.other_cpu:.1f}", f"{r.machine_cores:.2f} / {r.cores}", r.limit)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--mb", type=float, default=5.0, help="size of each file, in MB (10^6 bytes)")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts, one round each")
    parser.add_argument("--concurrency", type=int, default=1, help="each worker's --concurrency")
    parser.add_argument("--destination", choices=("s3rver", "local"), default="s3rver")
    args = parser.parse_args()
    results = run(args.files, args.mb, tuple(int(w) for w in args.workers.split(",")), args.concurrency,
                  args.destination)
    Console(width=260).print(table(results))


if __name__ == "__main__":
    main()
