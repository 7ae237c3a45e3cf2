"""Processes with a skewed wall clock: Debian's libfaketime, preloaded (`scripts/test` installs it).

Without it a test that needs it is skipped on a developer's machine, and fails in CI (CI=true):
there, a missing tool must never hide a test.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

LIBFAKETIME = next(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"), None)


def need_libfaketime() -> Path:
    """The preload library's path; skip (fail in CI) when libfaketime is not installed."""
    if LIBFAKETIME is None:
        reason = "needs Debian's libfaketime (apt-get install libfaketime; scripts/test installs it)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return LIBFAKETIME


def skewed(skew: timedelta) -> dict[str, str]:
    """The environment that sets a process's wall clock `skew` off (its monotonic clock left alone)."""
    return {"LD_PRELOAD": str(need_libfaketime()), "FAKETIME": f"{skew.total_seconds():+.0f}s",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_DONT_RESET": "1"}
