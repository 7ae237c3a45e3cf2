"""Wall time, CPU seconds and peak RSS of one contender's run, each in a process of its own."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class Figures:
    seconds: float
    cpu_seconds: float
    peak_rss_mib: float

    def mb_per_s(self, size: int) -> float:
        return size / 1e6 / self.seconds

    def cpu_per_gib(self, size: int) -> float:
        return self.cpu_seconds * GiB / size


def run_command(argv: Sequence[str], env: dict[str, str] | None = None) -> Figures:
    """Run `argv` to completion; its own wall time, user+system CPU and peak RSS (from wait4)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    error = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if process.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {process.returncode}: {error[-500:]}")
    return Figures(elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def run_forked(action: Callable[[], None]) -> Figures:
    """Run `action` in a forked child; its wall time and CPU (RSS includes the pages shared with
    the parent, so it is not reported for these)."""
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child
        code = 0
        try:
            action()
        except BaseException as exc:  # noqa: BLE001 - reported through the exit status
            os.write(2, f"bench child failed: {exc!r}\n".encode())
            code = 1
        os._exit(code)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("the forked contender failed (see stderr)")
    return Figures(elapsed, usage.ru_utime + usage.ru_stime, float("nan"))


def median(runs: Sequence[Figures]) -> Figures:
    return Figures(
        statistics.median(r.seconds for r in runs),
        statistics.median(r.cpu_seconds for r in runs),
        statistics.median(r.peak_rss_mib for r in runs),
    )
