"""Run one transfer in this process and print its figures as JSON (used by bench/large.py)."""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from config import load_settings
from worker.runtime import Runtime
from worker.transfer.run import run_transfer


def peak_rss_kib() -> int:
    """This process's peak RSS since it started (VmHWM: unlike ru_maxrss, not inherited from the
    parent that forked it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(transfer_id: str) -> None:
    runtime = Runtime.from_settings(load_settings())
    started, cpu = time.perf_counter(), time.process_time()
    outcome = run_transfer(runtime, transfer_id)
    elapsed, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    transfer = runtime.ledger.get(transfer_id)
    runtime.close()
    peak_kib = peak_rss_kib()
    print(json.dumps({"outcome": outcome, "bytes": transfer.bytes if transfer else None, "seconds": elapsed,
                      "cpu_seconds": cpu_s, "peak_rss_mib": peak_kib / 1024}))


if __name__ == "__main__":
    main(sys.argv[1])
