"""CPU seconds of running process trees and of the whole machine, read from /proc.

A Celery worker does its transfers in prefork children, so a process's figure here is the sum over
its tree (itself and every live descendant, plus what its reaped children left in cutime/cstime).
The machine's busy time is /proc/stat's total minus idle and iowait, in core-seconds.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name, or None once the process is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2:].split()


def _parents() -> dict[int, int]:
    """pid → parent pid of every process now running."""
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    return parents


def tree(root: int) -> list[int]:
    """`root` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, own + reaped children's) of one process; 0 once gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICKS  # utime stime cutime cstime


def tree_cpu(roots: Iterable[int]) -> float:
    """CPU seconds of the process trees under `roots`."""
    return sum(process_cpu(pid) for root in roots for pid in tree(root))


def pids_running(needle: str) -> list[int]:
    """Processes whose command line contains `needle` (e.g. a server's unique data directory)."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if needle in cmdline:
            found.append(int(entry.name))
    return found


@dataclass(frozen=True)
class MachineCpu:
    """A reading of /proc/stat's first line, in core-seconds."""

    busy: float
    total: float

    @classmethod
    def now(cls) -> MachineCpu:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return cls((sum(values[:8]) - idle) / TICKS, sum(values[:8]) / TICKS)

    def busy_cores_since(self, earlier: MachineCpu, wall: float) -> float:
        """Average cores busy (any process) between `earlier` and this reading."""
        return (self.busy - earlier.busy) / wall


def cores() -> int:
    return os.cpu_count() or 1
