"""Case: a CDN far away (issue 18). The fake CDN caps every connection at 16 MiB/s and waits 40 ms before
the first byte of every answer (`Cdn.rate`, `Cdn.first_byte_delay`); one large file (1 GiB) and many
small ones (200 × 1 MiB) go to s3rver and to local disk.

Contenders, each run in processes of its own, taking turns in every round (medians of the rounds):

- the archiver: `worker.transfer.run.run_transfer` over the real runtime in fresh worker processes
  (`bench.run_transfers`: one process runs its share of the files one after the other, as a worker
  process does, its kept download connections carrying over from file to file). The large file with
  ``download_streams`` 4 (the default) and 8; the small files with kept connections and with one
  connection per file (the fake CDN answers ``Connection: close``: `Cdn.close_connections`), in one
  worker process and in several at once (files in flight);
- ``rclone copyurl``, one process per file (how it is used: one URL per call);
- one plain ``curl`` into files on local disk (all URLs of the case in one call, so it keeps its
  connection): the source's limit with nothing stored elsewhere. curl cannot sign S3 requests, so it
  is the baseline of both destinations.

Seconds are the wall time of the whole case (for the archiver, from the moment its ready worker
processes are told to start to the last transfer's end), CPU seconds are the contender's own (every
worker process's, summed; rclone's and curl's from wait4), worker peak RSS is the largest VmHWM of any
one worker process (not shown for rclone and curl: wait4's ru_maxrss of a child started from this
process still counts this process's pages from before its exec, about 115 MiB); CDN connections are
the TCP connections the fake CDN accepted during the run. Every stored object's size is checked, then
the object is removed.

``python -m bench.cdn_latency [--quick]``, or ``bench/run --cdn-latency``. Prints its tables only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.destinations import Destination, LocalDisk, S3rver, rclone_env, started
from bench.large import API_KEY, API_SECRET, Stack, make_file, run_archiver
from bench.measure import Figures, MiB, median, run_command
from config import load_settings
from tests.fakestream.server import start_fake_stream
from tests.support.redis import RedisServer
from worker.intake.record import record_routes
from worker.intake.webhook import ready_file
from worker.ledger.connection import connect
from worker.ledger.store import Ledger

RATE = 16 * MiB  # bytes per second, per connection
FIRST_BYTE = 0.040  # seconds before the first byte of every answer
DESTINATIONS: dict[str, type[Destination]] = {"s3rver": S3rver, "local": LocalDisk}
RCLONE = "rclone copyurl"
CURL = "curl to local disk"
console = Console(width=250)


@dataclass(frozen=True)
class Case:
    """One case: `count` files of `size` bytes each."""

    title: str
    size: int
    count: int

    @property
    def total(self) -> int:
        return self.size * self.count


def archiver_files(stack: Stack, destination: Destination, source: Path, count: int, processes: int,
                   tuning: dict[str, Any]) -> Figures:
    """`count` new recordings of `source`, archived by `processes` worker processes started together."""
    env = stack.archiver_env(destination, tuning)
    settings = load_settings(env)
    ledger = Ledger(connect(stack.redis_url))
    ids: list[str] = []
    for _ in range(count):
        file = stack.fake.add_recording(f"default:bench-{uuid.uuid4().hex[:12]}", source)
        stream_file = ready_file(stack.fake.event_for(file))
        assert stream_file is not None
        ids.extend(record_routes(settings.archive, ledger, stream_file).transfer_ids)
    workers = [subprocess.Popen([sys.executable, "-m", "bench.run_transfers", *ids[n::processes]], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for n in range(processes)]
    for worker in workers:
        assert worker.stdout is not None
        if worker.stdout.readline().strip() != "ready":
            raise RuntimeError(f"a worker process did not start: {worker.communicate()[1][-2000:]}")
    go = time.time()
    results = []
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    for worker in workers:
        out, err = worker.communicate()
        if worker.returncode != 0:
            raise RuntimeError(f"a worker process failed: {err[-2000:]}")
        results.append(json.loads(out.splitlines()[-1]))
    if (archived := sum(r["outcomes"].get("archived", 0) for r in results)) != count:
        raise RuntimeError(f"{archived} of {count} archived: {[r['outcomes'] for r in results]}")
    for transfer_id in ids:
        transfer = ledger.get(transfer_id)
        assert transfer is not None
        _check(destination, transfer.key, source.stat().st_size)
    return Figures(max(r["began"] + r["seconds"] for r in results) - go, sum(r["cpu_seconds"] for r in results),
                   max(r["peak_rss_mib"] for r in results))


def archiver_large(stack: Stack, destination: Destination, source: Path, tuning: dict[str, Any]) -> Figures:
    figures, key = run_archiver(stack, destination, source, tuning)
    _check(destination, key, source.stat().st_size)
    return figures


def rclone_files(stack: Stack, destination: Destination, source: Path, count: int) -> Figures:
    """`rclone copyurl` once per file, one after the other."""
    remote = destination.rclone()
    assert remote is not None
    env, prefix = remote
    urls = [stack.fake.signed_url(stack.fake.add_recording("default:bench-peer", source)) for _ in range(count)]
    keys = [f"peer/{uuid.uuid4().hex}.mp4" for _ in urls]
    runs = [run_command(["rclone", "copyurl", "--config", "/dev/null", url, prefix + key], env=rclone_env(env))
            for url, key in zip(urls, keys, strict=True)]
    for key in keys:
        _check(destination, key, source.stat().st_size)
    return Figures(sum(r.seconds for r in runs), sum(r.cpu_seconds for r in runs), max(r.peak_rss_mib for r in runs))


def curl_files(stack: Stack, into: Path, source: Path, count: int) -> Figures:
    """One curl for every file (it keeps its connection), each into a file on local disk."""
    into.mkdir(parents=True, exist_ok=True)
    argv = ["curl", "-sS", "--fail"]
    paths = [into / f"{uuid.uuid4().hex}.mp4" for _ in range(count)]
    for path in paths:
        argv += ["-o", str(path), stack.fake.signed_url(stack.fake.add_recording("default:bench-curl", source))]
    figures = run_command(argv)
    for path in paths:
        if path.stat().st_size != source.stat().st_size:
            raise RuntimeError(f"curl stored {path.stat().st_size} bytes, not {source.stat().st_size}")
        path.unlink()
    return figures


def _check(destination: Destination, key: str, size: int) -> None:
    stored = destination.size_of(key)
    destination.delete(key)
    if stored != size:
        raise RuntimeError(f"{destination.name}: {key} has {stored} bytes, not {size}")


def contenders(stack: Stack, destination: Destination, case: Case, source: Path, streams: list[int],
               in_flight: list[int], tuning: dict[str, Any]) -> dict[str, Callable[[], Figures]]:
    """Name → one measured run of the whole case."""
    runs: dict[str, Callable[[], Figures]] = {}
    if case.count == 1:
        for n in streams:
            runs[f"archiver, download_streams {n}"] = (
                lambda n=n: archiver_large(stack, destination, source,  # type: ignore[misc]
                                           {**tuning, "download_streams": n}))
    else:
        for processes in in_flight:
            where = "1 worker process" if processes == 1 else f"{processes} worker processes"
            runs[f"archiver, kept connections, {where}"] = (
                lambda p=processes: archiver_files(stack, destination, source, case.count, p, tuning))  # type: ignore[misc]

            def closing(p: int = processes) -> Figures:
                stack.fake.cdn_closes_connections = True
                try:
                    return archiver_files(stack, destination, source, case.count, p, tuning)
                finally:
                    stack.fake.cdn_closes_connections = False
            runs[f"archiver, one connection per file, {where}"] = closing
    runs[RCLONE] = lambda: rclone_files(stack, destination, source, case.count)
    if isinstance(destination, LocalDisk):
        runs[CURL] = lambda: curl_files(stack, stack.workdir / "curl", source, case.count)
    return runs


def measure_case(stack: Stack, names: list[str], case: Case, source: Path, rounds: int, streams: list[int],
                 in_flight: list[int], tuning: dict[str, Any]) -> Table:
    """Every contender of `case` into every destination, `rounds` interleaved rounds; the medians."""
    table = Table("destination", "contender", "MB/s", "s", "CPU s", "worker peak RSS MiB", "CDN connections",
                  "÷ rclone copyurl",
                  "kept ÷ one per file", title=f"{case.title} (per connection {RATE // MiB} MiB/s, "
                  f"{FIRST_BYTE * 1000:.0f} ms to the first byte; medians of {rounds})")
    for name in names:
        with started(DESTINATIONS[name](stack.workdir / name)) as destination:
            runs = contenders(stack, destination, case, source, streams, in_flight, tuning)
            figures: dict[str, list[Figures]] = {contender: [] for contender in runs}
            connections: dict[str, list[int]] = {contender: [] for contender in runs}
            for round_ in range(rounds):
                order = list(runs)[round_ % len(runs):] + list(runs)[:round_ % len(runs)]
                for contender in order:
                    before = stack.fake.cdn_connections
                    figures[contender].append(runs[contender]())
                    connections[contender].append(stack.fake.cdn_connections - before)
                    console.print(f"  {destination.name}: {contender}: {figures[contender][-1].seconds:.1f} s",
                                  style="dim")
            medians = {contender: median(values) for contender, values in figures.items()}
            rclone = medians[RCLONE].seconds
            for contender, value in medians.items():
                vs_rclone = f"{rclone / value.seconds:.2f}" if contender.startswith("archiver") else ""
                kept = ""
                if "kept connections" in contender:
                    closing = medians[contender.replace("kept connections", "one connection per file")]
                    kept = f"{closing.seconds / value.seconds:.2f}"
                rss = f"{value.peak_rss_mib:.0f}" if contender.startswith("archiver") else ""
                table.add_row(destination.name, contender, f"{value.mb_per_s(case.total):.1f}",
                              f"{value.seconds:.2f}", f"{value.cpu_seconds:.2f}", rss,
                              f"{statistics.median(connections[contender]):.0f}", vs_rclone, kept)
    return table


def run(*, names: list[str], rounds: int, large_mib: int, files: int, file_mib: int, streams: list[int],
        in_flight: list[int], cases: tuple[str, ...] = ("large", "small"), handshake_ms: float = 0,
        tuning: dict[str, Any] | None = None) -> list[Table]:
    """The cases with their own Redis and fake Stream (rate-capped, late first bytes); their tables."""
    names = [name for name in names if name in DESTINATIONS]
    workdir = Path(tempfile.mkdtemp(prefix="archiver-bench-cdn-"))
    redis_server = RedisServer(workdir / "redis").start()
    tables: list[Table] = []
    try:
        with start_fake_stream(API_KEY, API_SECRET) as fake:
            fake.cdn_rate, fake.cdn_first_byte_delay = RATE, FIRST_BYTE
            fake.cdn_handshake_delay = handshake_ms / 1000
            stack = Stack(redis_server.url, fake, workdir)
            handshake = f", {handshake_ms:.0f} ms more on a new connection" if handshake_ms else ""
            chosen = {"large": (Case(f"One {large_mib} MiB file{handshake}", large_mib * MiB, 1), [1]),
                      "small": (Case(f"{files} files of {file_mib} MiB{handshake}", file_mib * MiB, files), in_flight)}
            for case, flights in (chosen[name] for name in cases):
                source = make_file(workdir / f"source-{case.size}.mp4", case.size)
                console.print(f"[bold]{case.title}[/]")
                table = measure_case(stack, names, case, source, rounds, streams, flights, tuning or {})
                console.print(table)
                tables.append(table)
                source.unlink()
    finally:
        redis_server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cdn_latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--destinations", default="s3rver,local")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--large-mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--file-mib", type=int, default=1)
    parser.add_argument("--streams", default="4,8", help="download_streams for the large file")
    parser.add_argument("--in-flight", default="1,4", help="worker processes at once for the small files")
    parser.add_argument("--cases", default="large,small")
    parser.add_argument("--handshake-ms", type=float, default=0,
                        help="more before the first answer on each new connection (TCP + TLS handshakes; 0: loopback)")
    parser.add_argument("--tuning", default="{}",
                        help='the archiver\'s [transfer] settings, JSON: \'{"part_size": "5MiB"}\'')
    parser.add_argument("--quick", action="store_true", help="64 MiB and 40 files, one round: a smoke run")
    args = parser.parse_args()
    run(names=args.destinations.split(","), rounds=1 if args.quick else args.rounds,
        large_mib=64 if args.quick else args.large_mib, files=40 if args.quick else args.files,
        file_mib=args.file_mib, streams=[int(n) for n in args.streams.split(",")],
        in_flight=[int(n) for n in args.in_flight.split(",")], cases=tuple(args.cases.split(",")),
        handshake_ms=args.handshake_ms, tuning=json.loads(args.tuning))


if __name__ == "__main__":
    main()
