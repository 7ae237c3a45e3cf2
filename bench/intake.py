"""Case 4: webhook intake. Requests per second and latency of POST /webhooks/stream at a fixed
offered rate, open loop (bench/loadgen.py: latency from each request's planned send time).

The receiver is the real `archiver web --workers N` (N uvicorn processes on one port, default 2)
against a fresh redis-server, with no Celery worker and no scheduler, so every task it enqueues
stays in the Celery queue list in Redis. Two configurations: the default (call-level routing
on: the receiver records the file and queues one route task, ``f_…``, whose worker looks the call
up and records the transfers) and ``call_storage_key = ""`` (the receiver records the file and its
transfer and queues the transfer, ``t_…``). Every request is a new recording_ready event, built and
signed like Stream's before the clock starts; 300 more warm the receiver up first (its first
requests import and connect lazily) and are verified with the rest. CPU seconds over the run: the receiver, redis-server
and this process (the load generator). Verified afterwards: every request answered 202; the ledger
holds exactly N files and N transfers (direct) or N files waiting for their routes (call routing);
the queue holds exactly N messages, whose ids are distinct and are the ledger's (lost = a request
whose file, transfer or message is missing; duplicated = messages beyond one per id).
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
from rich.console import Console
from rich.table import Table

from bench import cpu
from bench.destinations import make_workdir
from bench.loadgen import Outcome, build_request, offer
from bench.service import PREFIX, Service, count_files, service
from config.celery import TRANSFER_QUEUE
from tests.support.ports import free_port, wait_for_port
from tests.support.processes import wait_until

TARGET_P99_MS = 25.0
WARM_UP = 300  # requests sent (over 3 s) before the measured run; checked with the others


@dataclass(frozen=True)
class IntakeResult:
    """One run at `offered` requests/s for `seconds`."""

    routing: str  # "call routing (default)" or "direct"
    offered: float
    seconds: float
    requests: int
    achieved: float  # answers per second over the run (first planned send → last answer)
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # answers other than 202, and connection errors
    lost: int  # recorded transfers with no queued message, or requests whose file is not in the ledger
    duplicated: int  # queued messages beyond one per transfer
    web_processes: int
    connections: int
    web_cpu: float
    redis_cpu: float
    client_cpu: float
    machine_cores: float  # average cores busy over the run (any process)
    other_cpu: float  # core-seconds of processes outside this benchmark (the machine is shared)
    cores: int

    @property
    def passed(self) -> bool:
        return self.p99_ms < TARGET_P99_MS and not (self.errors or self.lost or self.duplicated)


def queued_transfer_ids(client: redis.Redis) -> list[str]:
    """The transfer id of every message in the Celery queue (all its priority lists)."""
    ids = []
    for key in client.scan_iter(match=f"{TRANSFER_QUEUE}*"):
        for raw in client.lrange(key, 0, -1):
            message = json.loads(raw)
            body = message["body"]
            if message["properties"].get("body_encoding") == "base64":
                body = base64.b64decode(body)
            args, _kwargs, _embed = json.loads(body)
            ids.append(args[0])
    return ids


def settle(client: redis.Redis, expected: int) -> None:
    """Wait (up to 10 s) for the enqueues the receiver does after answering."""
    def enough() -> bool:
        return sum(int(client.llen(k)) for k in client.scan_iter(match=f"{TRANSFER_QUEUE}*")) >= expected

    try:
        wait_until(enough, timeout=10, interval=0.1)
    except AssertionError:
        pass  # counted as lost below


def check(svc: Service, requests: int, call_routing: bool) -> tuple[int, int]:
    """(lost, duplicated), comparing requests, the ledger and the queue."""
    client = svc.redis
    settle(client, requests)
    index = "unrouted" if call_routing else "transfers"  # what the receiver records and queues
    ledger_ids = {str(key, "utf-8") for key in client.zrange(f"{PREFIX}{index}", 0, -1)}  # type: ignore[arg-type]
    queued = Counter(queued_transfer_ids(client))
    files = count_files(client)
    lost = max(requests - files, requests - len(ledger_ids), len(ledger_ids - set(queued)))
    duplicated = sum(n - 1 for n in queued.values()) + max(0, len(ledger_ids) - requests)
    return lost, duplicated


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1] if len(values) > 1 else values[0]


def summarise(routing: str, outcome: Outcome, rate: float, seconds: float, lost: int, duplicated: int,
              spent: dict[str, float], connections: int, web_workers: int) -> IntakeResult:
    ms = [v * 1000 for v in outcome.latency]
    errors = sum(1 for s in outcome.status if s != 202)  # noqa: PLR2004 - 202: a new file, recorded
    return IntakeResult(routing, rate, seconds, len(ms), len(ms) / outcome.wall, percentile(ms, 50), percentile(ms, 90),
                        percentile(ms, 99), max(ms), errors, lost, duplicated, web_workers, connections, spent["web"],
                        spent["redis"], spent["client"], spent["machine"] / spent["span"],
                        spent["machine"] - spent["web"] - spent["redis"] - spent["client"], cpu.cores())


def run(rate: float = 500, seconds: float = 30, connections: int = 64, routings: tuple[bool, ...] = (True, False),
        workdir: Path | None = None, profile: Path | None = None, web_workers: int = 2) -> list[IntakeResult]:
    """Case 4: one run at `rate` requests/s for `seconds` per routing configuration (True: call-level
    routing, the default; False: ``call_storage_key = ""``); see the module docstring."""
    own = workdir is None
    workdir = workdir or make_workdir()
    try:
        return [run_once(rate, seconds, connections, call_routing, workdir,
                         profile and profile.with_suffix(f".{'call' if call_routing else 'direct'}.txt"), web_workers)
                for call_routing in routings]
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def profiled(pid: int, output: Path | None) -> Iterator[None]:
    """py-spy's raw (collapsed) stacks of `pid` while the block runs: the thread holding the GIL, sampled
    without pausing the process."""
    if output is None:
        yield
        return
    command = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid), "--format", "raw",
               "--gil", "--nonblocking", "-r", "200", "-o", str(output)]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603 - our own argv
    time.sleep(1.0)  # attached before the clock starts
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)


def run_once(rate: float, seconds: float, connections: int, call_routing: bool, workdir: Path,
             profile: Path | None = None, web_workers: int = 2) -> IntakeResult:
    storage = {"name": "disk", "storage_type": "local", "bucket": str(workdir / "archive")}
    top = {} if call_routing else {"call_storage_key": ""}
    count = int(rate * seconds)
    with service(workdir / f"intake-{time.monotonic_ns() % 10**9}", storage, top) as svc:
        url = start_web(svc, web_workers)
        requests = [build_request(url, d.body, d.headers) for d in svc.deliveries(count + WARM_UP, b"x" * 1024, "in")]
        offer(url, requests[:WARM_UP], WARM_UP / 3, 8)  # first calls import and connect: not measured
        requests = requests[WARM_UP:]
        pids = {"web": [svc.pid("web")], "redis": [svc.redis_server.process.pid]}  # type: ignore[union-attr]
        before = {name: cpu.tree_cpu(p) for name, p in pids.items()}
        machine, own, started = cpu.MachineCpu.now(), time.process_time(), time.perf_counter()
        with profiled(svc.pid("web"), profile):
            outcome = offer(url, requests, rate, connections)
        spent = {name: cpu.tree_cpu(p) - before[name] for name, p in pids.items()}
        spent["client"] = time.process_time() - own
        spent["machine"] = cpu.MachineCpu.now().busy - machine.busy
        spent["span"] = time.perf_counter() - started
        lost, duplicated = check(svc, count + WARM_UP, call_routing)
    routing = "call routing (default)" if call_routing else "direct"
    return summarise(routing, outcome, rate, seconds, lost, duplicated, spent, connections, web_workers)


def start_web(svc: Service, workers: int) -> str:
    """`archiver web --workers N` on a free port (its CPU is measured over the process tree)."""
    processes = svc.processes
    processes.web_port = processes.web_port or free_port()
    processes.start("web", "web", "--host", "127.0.0.1", "--port", str(processes.web_port), "--workers", str(workers))
    wait_for_port(processes.web_port, timeout=30)
    return processes.webhook_url


def table(results: list[IntakeResult]) -> Table:
    out = Table(title=f"Case 4: webhook intake, open loop (target p99 < {TARGET_P99_MS:g} ms)")
    for column in ("routing", "offered/s", "s", "requests", "achieved/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
                   "errors", "lost", "dup.", "web procs", "conns", "web CPU s", "redis CPU s", "client CPU s",
                   "other procs CPU s", "cores busy", "target"):
        out.add_column(column, justify="right")
    for r in results:
        out.add_row(r.routing, f"{r.offered:g}", f"{r.seconds:g}", str(r.requests), f"{r.achieved:.0f}",
                    f"{r.p50_ms:.1f}", f"{r.p90_ms:.1f}", f"{r.p99_ms:.1f}", f"{r.max_ms:.1f}",
                    str(r.errors), str(r.lost),
                    str(r.duplicated), str(r.web_processes), str(r.connections), f"{r.web_cpu:.1f}",
                    f"{r.redis_cpu:.1f}", f"{r.client_cpu:.1f}", f"{r.other_cpu:.1f}",
                    f"{r.machine_cores:.2f} / {r.cores}",
                    "met" if r.passed else "MISSED")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=500.0, help="offered requests per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--connections", type=int, default=64, help="the client's keep-alive connections")
    parser.add_argument("--routing", default="call,direct",
                        help="call (call-level routing, the default config), direct (call_storage_key = \"\"), or both")
    parser.add_argument("--profile", type=Path, help="py-spy raw stacks of the receiver to PATH.<routing>.txt")
    parser.add_argument("--web-workers", type=int, default=2, help="archiver web --workers N")
    args = parser.parse_args()
    routings = tuple(name == "call" for name in args.routing.split(","))
    Console(width=240).print(table(run(args.rate, args.seconds, args.connections, routings,
                                            profile=args.profile, web_workers=args.web_workers)))


if __name__ == "__main__":
    main()
