"""Run several transfers one after the other in this process, as one worker process does (its kept
download connections carry over from file to file), and print their figures as JSON (bench/cdn_latency.py).

Builds the runtime, prints ``ready``, waits for a line on stdin (so several of these start their
transfers together), then runs the transfers named on the command line. The figures cover the
transfers only: wall and CPU seconds, peak RSS of the whole process, the outcomes by name.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter

from bench.run_one_transfer import peak_rss_kib
from config import load_settings
from worker.runtime import Runtime
from worker.transfer.run import run_transfer


def main(transfer_ids: list[str]) -> None:
    runtime = Runtime.from_settings(load_settings())
    print("ready", flush=True)
    sys.stdin.readline()
    began, started, cpu = time.time(), time.perf_counter(), time.process_time()
    outcomes = Counter(run_transfer(runtime, transfer_id) for transfer_id in transfer_ids)
    elapsed, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    runtime.close()
    print(json.dumps({"outcomes": dict(outcomes), "began": began, "seconds": elapsed, "cpu_seconds": cpu_s,
                      "peak_rss_mib": peak_rss_kib() / 1024}))


if __name__ == "__main__":
    main(sys.argv[1:])
