"""Cases 1 and 2: one large file to each destination, the archiver beside its peers, and the worker's
peak RSS for several file sizes.

The source is the fake Stream's CDN (tests/fakestream): a real HTTP/1.1 server on loopback that
serves a generated file from disk with ``sendfile``, Content-Length, ETag and Range. Each archiver
run is one transfer in a fresh process (`bench.run_one_transfer`), which reports its own CPU seconds
and peak RSS; each peer runs in a process of its own too. Contenders take turns in every round.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.destinations import Destination, GcsEmulator, LocalDisk, rclone_env
from bench.measure import Figures, run_command, run_forked
from config import load_settings
from tests.fakestream.server import FakeStream
from tests.support.settings import write_config
from worker.intake.record import record_routes
from worker.intake.webhook import ready_file
from worker.ledger.connection import connect
from worker.ledger.store import Ledger

API_KEY, API_SECRET = "bench-key", "bench-secret-0123456789-0123456789-0123456789"
RAW = "curl to /dev/null"
RCLONE_SYNC = "rclone copyurl + sync"
PLAIN = "plain streaming copy"
ARCHIVER = "archiver"


@dataclass
class Stack:
    """What every run shares: Redis, the fake Stream, a scratch directory."""

    redis_url: str
    fake: FakeStream
    workdir: Path

    def archiver_env(self, destination: Destination, tuning: dict[str, Any] | None = None) -> dict[str, str]:
        storage = destination.storage()
        config = write_config(self.workdir / f"{storage['name']}.toml", {
            "default_storage": storage["name"], "download_hosts": [self.fake.cdn_host],
            "transfer": {**destination.tuning(), **(tuning or {})}, "storages": [storage]})
        return {**os.environ, "STREAM_API_KEY": API_KEY, "STREAM_API_SECRET": API_SECRET,
                "REDIS_URL": self.redis_url, "ARCHIVER_CONFIG": str(config), "ARCHIVER_LOG_LEVEL": "warning"}


def make_file(path: Path, size: int) -> Path:
    """`size` bytes of incompressible data (one random MiB repeated: no server can dedupe a block
    of it, and generating GiBs stays quick)."""
    block = os.urandom(1 << 20)
    with path.open("wb") as out:
        for _ in range(size >> 20):
            out.write(block)
        out.write(block[: size & ((1 << 20) - 1)])
    return path


def sequence(*steps: Callable[[], Figures]) -> Figures:
    """Steps run one after the other, measured as one: wall time and CPU summed, the highest peak RSS."""
    started = time.perf_counter()
    figures = [step() for step in steps]
    return Figures(time.perf_counter() - started, sum(f.cpu_seconds for f in figures),
                   max(f.peak_rss_mib for f in figures))


def run_archiver(stack: Stack, destination: Destination, source: Path, tuning: dict[str, Any] | None = None
                 ) -> tuple[Figures, str]:
    """One transfer of `source` (a new recording each time) in a fresh worker process; its figures
    and the key it wrote."""
    env = stack.archiver_env(destination, tuning)
    settings = load_settings(env)
    ledger = Ledger(connect(stack.redis_url))
    file = stack.fake.add_recording(f"default:bench-{uuid.uuid4().hex[:12]}", source)
    stream_file = ready_file(stack.fake.event_for(file))
    assert stream_file is not None
    (transfer_id,) = record_routes(settings.archive, ledger, stream_file).transfer_ids
    command = [sys.executable, "-m", "bench.run_one_transfer", transfer_id]
    if os.environ.get("BENCH_PYSPY"):  # a profile of this run: py-spy's collapsed stacks at that path
        command = ["py-spy", "record", "--subprocesses", "--threads", "-r", "200", "--format", "raw",
                   "-o", os.environ["BENCH_PYSPY"],
                   "--", *command]
    result = subprocess.run(command, env=env,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"the archiver's run failed: {result.stderr[-2000:]}")
    figures = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])
    if figures["outcome"] != "archived":
        raise RuntimeError(f"the archiver's transfer ended {figures['outcome']}: {ledger.get(transfer_id)}")
    transfer = ledger.get(transfer_id)
    assert transfer is not None
    return Figures(figures["seconds"], figures["cpu_seconds"], figures["peak_rss_mib"]), transfer.key


def contenders(stack: Stack, destination: Destination, source: Path, size: int
               ) -> dict[str, Callable[[], Figures]]:
    """Name → one measured run, each writing a new object and removing it once checked."""
    url = lambda: stack.fake.signed_url(stack.fake.add_recording("default:bench-peer", source))  # noqa: E731

    def checked(run: Callable[[str, str], Figures]) -> Callable[[], Figures]:
        def once() -> Figures:
            key = f"peer/{uuid.uuid4().hex}.mp4"
            figures = run(url(), key)  # the URL is made here: a forked child cannot add to the fake's store
            stored = destination.size_of(key)
            destination.delete(key)
            if stored != size:
                raise RuntimeError(f"{destination.name}: peer stored {stored} bytes, not {size}")
            return figures
        return once

    def archiver() -> Figures:
        figures, key = run_archiver(stack, destination, source)
        stored = destination.size_of(key)
        destination.delete(key)
        if stored != size:
            raise RuntimeError(f"{destination.name}: the archiver stored {stored} bytes, not {size}")
        return figures

    runs: dict[str, Callable[[], Figures]] = {
        ARCHIVER: archiver,
        PLAIN: checked(lambda src, key: run_forked(lambda: destination.plain_copy(src, key))),
    }
    rclone = destination.rclone()
    if rclone is not None:
        env, prefix = rclone
        copyurl = lambda src, key: run_command(  # noqa: E731
            ["rclone", "copyurl", "--config", "/dev/null", src, prefix + key], env=rclone_env(env))
        runs["rclone copyurl"] = checked(copyurl)
        if isinstance(destination, LocalDisk):  # as durable as the archiver's file: fsync of it and its directory
            runs[RCLONE_SYNC] = checked(lambda src, key: sequence(
                lambda: copyurl(src, key),
                lambda: run_command(["sync", str(destination.root / key), str((destination.root / key).parent)])))
    if isinstance(destination, GcsEmulator):
        chunk = destination.chunk_mib
        runs[f"google-cloud-storage resumable ({chunk} MiB chunks)"] = checked(
            lambda src, key: run_forked(lambda: destination.sdk_copy(src, key, chunk)))
    return runs


def curl_raw(stack: Stack, source: Path) -> Figures:
    url = stack.fake.signed_url(stack.fake.add_recording("default:bench-raw", source))
    return run_command(["curl", "-sS", "--fail", "-o", "/dev/null", url])
