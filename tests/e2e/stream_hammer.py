"""A process that calls Stream's GetCall as fast as the archiver lets it, for the budget tests.

    python -m tests.e2e.stream_hammer SECONDS CALL_TYPE CALL_ID

Settings come from the environment (STREAM_*, REDIS_URL, ARCHIVER_CONFIG), through the archiver's
own Runtime: the same Stream client and shared budget as a worker's. Prints how many calls it made.
"""

from __future__ import annotations

import os
import sys
import time

from config import load_settings
from worker.runtime import Runtime


def main(seconds: float, call_type: str, call_id: str) -> int:
    runtime = Runtime.from_settings(load_settings(dict(os.environ)))
    made, stop = 0, time.monotonic() + seconds
    try:
        while time.monotonic() < stop:
            if runtime.stream.get_call(call_type, call_id) is None:
                return 1
            made += 1
    finally:
        runtime.close()
    print(made)
    return 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]), sys.argv[2], sys.argv[3]))
