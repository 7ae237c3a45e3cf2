"""The transfer benchmark, one command: ``bench/run`` (installs what it needs) or ``python -m bench``.

1. One large file to each destination: the archiver beside ``rclone copyurl`` (google-cloud-storage's
   resumable upload on the GCS emulator, where rclone cannot write), a plain streaming copy (the
   server's and the socket loop's limit) and ``curl`` to /dev/null (the source's limit). Each
   contender runs in a process of its own; the rounds interleave them; the table shows medians.
2. The worker's peak RSS for several file sizes (the archiver alone).
3. Many files end to end through webhooks and Celery workers (`bench.many`).
4. Webhook intake at a fixed offered rate (`bench.intake`).
5. `archiver find` at 1,000,000 indexed files (`bench.find`; not in the default cases: ``--cases find``).
6. A CDN far away: every connection capped at 16 MiB/s, 40 ms before every answer's first byte; 1 GiB and
   200 × 1 MiB into s3rver and local disk, the archiver vs rclone copyurl vs curl (`bench.cdn_latency`;
   not in the default cases: ``--cdn-latency``, or ``--cases cdn-latency`` beside others).

Every emulator is CPU-bound on this machine: wall time mostly measures the server, so each row
also gives the contender's own CPU seconds per GiB. Results go to bench/RESULTS.md as well.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.destinations import AzuriteBlob, Destination, GcsEmulator, LocalDisk, S3rver, started
from bench.large import API_KEY, API_SECRET, ARCHIVER, Stack, contenders, curl_raw, make_file, run_archiver
from bench.measure import Figures, MiB, median
from tests.fakestream.server import start_fake_stream
from tests.support.redis import RedisServer

DESTINATIONS: dict[str, type[Destination]] = {
    "s3rver": S3rver, "local": LocalDisk, "azurite": AzuriteBlob, "gcs": GcsEmulator,
}
FOUR_GIB_OK = ("s3rver", "local")  # moto holds objects in RAM, Azurite stops at 2 GiB, the GCS emulator is quadratic
RESULTS = Path(__file__).with_name("RESULTS.md")
console = Console(width=250)


def large_file_case(stack: Stack, names: list[str], source: Path, size: int, rounds: int) -> Table:
    """Case 1: medians of `rounds` interleaved rounds per destination."""
    table = Table("destination", "contender", "MB/s", "CPU s/GiB", "peak RSS MiB", "archiver ÷ this",
                  title=f"1. One {size // MiB} MiB file (medians of {rounds})")
    raw = [curl_raw(stack, source) for _ in range(rounds)]
    curl = median(raw)
    for name in names:
        with started(DESTINATIONS[name](stack.workdir / name)) as destination:
            runs = contenders(stack, destination, source, size)
            figures: dict[str, list[Figures]] = {contender: [] for contender in runs}
            for round_ in range(rounds):
                order = list(runs)[round_ % len(runs):] + list(runs)[:round_ % len(runs)]
                for contender in order:
                    figures[contender].append(runs[contender]())
                console.print(f"  {destination.name}: round {round_ + 1}/{rounds} done", style="dim")
            medians = {contender: median(values) for contender, values in figures.items()}
            ours = medians[ARCHIVER].mb_per_s(size)
            for contender, value in medians.items():
                ratio = "" if contender == ARCHIVER else f"{ours / value.mb_per_s(size):.2f}"
                measured = value.peak_rss_mib == value.peak_rss_mib  # NaN: not measured (a forked peer)
                rss = f"{value.peak_rss_mib:.0f}" if measured else ""
                table.add_row(destination.name, contender, f"{value.mb_per_s(size):.0f}",
                              f"{value.cpu_per_gib(size):.2f}", rss, ratio)
    table.add_row("(source)", "curl to /dev/null", f"{curl.mb_per_s(size):.0f}", f"{curl.cpu_per_gib(size):.2f}", "",
                  "")
    return table


def memory_case(stack: Stack, names: list[str], sources: dict[int, Path]) -> Table:
    """Case 2: the archiver's peak RSS per file size and destination."""
    sizes = sorted(sources)
    table = Table("destination", *(f"{s // MiB} MiB: RSS MiB (MB/s)" for s in sizes),
                  title="2. Worker peak RSS by file size")
    for name in names:
        cells: list[str] = []
        with started(DESTINATIONS[name](stack.workdir / f"mem-{name}")) as destination:
            for size in sizes:
                if size > 2 << 30 and name not in FOUR_GIB_OK:
                    cells.append("—")
                    continue
                figures, key = run_archiver(stack, destination, sources[size])
                destination.delete(key)
                cells.append(f"{figures.peak_rss_mib:.0f} ({figures.mb_per_s(size):.0f})")
        table.add_row(destination.name, *cells)
    return table


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    rclone = subprocess.run(["rclone", "version"], capture_output=True, text=True, check=False).stdout.split("\n")[0]
    return (f"{os.cpu_count()} CPUs ({cpu}), {int(memory) // 1024 // 1024} GiB RAM, "
            f"Python {platform.python_version()}, {rclone}")


def write_results(tables: list[Table], header: str) -> None:
    recorder = Console(record=True, width=250, file=open("/dev/null", "w"))  # noqa: SIM115 - rendering only
    for table in tables:
        recorder.print(table)
    RESULTS.write_text(f"# Benchmark results\n\n{header}\n\n```\n{recorder.export_text()}```\n")


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--destinations", default="s3rver,azurite,gcs,local")
    parser.add_argument("--cases", default="large,memory,many,intake")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=1024, help="case 1's file")
    parser.add_argument("--memory-mib", default="64,1024,4096", help="case 2's files")
    parser.add_argument("--quick", action="store_true", help="small files, one round: a smoke run")
    parser.add_argument("--cdn-latency", action="store_true",
                        help="only case 6, a CDN far away (s3rver and local disk of --destinations)")
    args = parser.parse_args()
    names = args.destinations.split(",")
    cases = ["cdn-latency"] if args.cdn_latency else args.cases.split(",")
    size = 64 * MiB if args.quick else args.size_mib * MiB
    rounds = 1 if args.quick else args.rounds
    memory_sizes = [16 * MiB, 64 * MiB] if args.quick else [int(m) * MiB for m in args.memory_mib.split(",")]
    started_at = datetime.now(UTC)
    tables: list[Table] = []
    workdir = Path(tempfile.mkdtemp(prefix="archiver-bench-"))
    redis_server = RedisServer(workdir / "redis").start()
    try:
        with start_fake_stream(API_KEY, API_SECRET) as fake:
            stack = Stack(redis_server.url, fake, workdir)
            sources: dict[int, Path] = {}

            def source(n: int) -> Path:
                if n not in sources:
                    sources[n] = make_file(workdir / f"source-{n // MiB}.mp4", n)
                return sources[n]

            steps: dict[str, Callable[[], Table | list[Table]]] = {
                "large": lambda: large_file_case(stack, names, source(size), size, rounds),
                "memory": lambda: memory_case(stack, names, {n: source(n) for n in memory_sizes}),
                "many": lambda: many_files_case(args.quick),
                "intake": lambda: intake_case(args.quick),
                "find": lambda: find_case(args.quick),
                "cdn-latency": lambda: cdn_latency_case(args.quick, names, rounds),
            }
            for case in cases:
                console.print(f"[bold]case {case}[/]")
                result = steps[case]()
                for table in result if isinstance(result, list) else [result]:
                    console.print(table)
                    tables.append(table)
    finally:
        redis_server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    header = f"Run on {started_at:%Y-%m-%d %H:%M} UTC; {machine()}."
    console.print(header)
    write_results(tables, header)
    console.print(f"written to {RESULTS}")


def many_files_case(quick: bool) -> Table:
    from bench import many  # noqa: PLC0415 - its own servers and workers

    return many.table(many.run(files=100 if quick else 1000, workers=(1, 2) if quick else (1, 2, 4)))


def intake_case(quick: bool) -> Table:
    from bench import intake  # noqa: PLC0415

    return intake.table(intake.run(seconds=5 if quick else 30))


def find_case(quick: bool) -> list[Table]:
    from bench import find  # noqa: PLC0415

    return list(find.run(files=20_000 if quick else 1_000_000, calls_count=1_000 if quick else find.CALLS))


def cdn_latency_case(quick: bool, names: list[str], rounds: int) -> list[Table]:
    from bench import cdn_latency  # noqa: PLC0415 - its own Redis and a rate-capped fake Stream

    return cdn_latency.run(names=names, rounds=rounds, large_mib=64 if quick else 1024, files=40 if quick else 200,
                           file_mib=1, streams=[4, 8], in_flight=[1, 4])


if __name__ == "__main__":
    main()
