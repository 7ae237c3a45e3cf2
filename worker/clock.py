"""Time as the archiver writes it: milliseconds since the epoch in Redis, RFC 3339 UTC in JSON.

`now_ms` is this process's clock, for what is only shown; what decides (leases, due times) is
judged by Redis's clock inside the ledger's scripts.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def seconds_to_ms(seconds: float) -> int:
    return int(seconds * 1000)


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_ms(value: str | int | None) -> datetime | None:
    if value in (None, ""):
        return None
    return datetime.fromtimestamp(int(value) / 1000, UTC)


def rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
