"""Resume across attempts (issue 18): a real worker archiving one large file to local disk is SIGKILLed
once 75 % of it is in the store; the next worker finishes it. Prints the bytes in the store at the kill,
the offset resumed from, the bytes the second worker wrote (its process group's wchar, counted from its
resume on) and its seconds.

It runs the chaos test `tests/chaos/test_resume.py` (real redis-server, `archiver web|worker|scheduler`,
the fake Stream behind a capped proxy) at another size: ``python -m bench.resume [--mib 4096]``. Needs
about twice the size free under the temporary directory (the source and the archive).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=4096, help="file size in MiB")
    args = parser.parse_args()
    env = {**os.environ, "ARCHIVER_RESUME_TEST_MIB": str(args.mib)}
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "--timeout", "3600",
                          "tests/chaos/test_resume.py"], env=env, capture_output=True, text=True, check=False)
    figures = [line for line in run.stdout.splitlines() if line.startswith("killed at")]
    print("\n".join(figures) or run.stdout[-4000:])
    print(f"whole run (file made, first worker, kill, second worker, checks): {time.monotonic() - started:.0f} s; "
          f"{'passed' if run.returncode == 0 else 'FAILED'}")
    sys.exit(run.returncode)


if __name__ == "__main__":
    main()
