"""The audit log's figures for /metrics: entries waiting at each stage, and how old the oldest is."""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis

from worker.ledger.keys import DEFAULT_PREFIX, Keys


@dataclass(frozen=True)
class Figures:
    pending: int  # noted, not chained yet
    chained: int  # chained, not exported yet
    seq: int  # the chain's last seq (0: no entry yet)
    last_export_at: float | None  # unix seconds of the last export; None before the first
    oldest_unexported_at: float | None  # unix seconds the oldest entry not exported was noted; None: none waits


def read_figures(client: redis.Redis, prefix: str = DEFAULT_PREFIX) -> Figures:
    """Read in one round trip (five commands), whatever the size of the log."""
    keys = Keys(prefix)
    pipe = client.pipeline(transaction=True)
    pipe.llen(keys.auditlog_pending)
    pipe.llen(keys.auditlog_chain)
    pipe.hmget(keys.auditlog_head, "seq", "exported_at")
    pipe.lindex(keys.auditlog_chain, 0)
    pipe.lindex(keys.auditlog_pending, 0)
    pending, chained, (seq, exported_at), oldest_chained, oldest_pending = pipe.execute()
    return Figures(int(pending), int(chained), int(seq or 0),
                   None if exported_at is None else int(exported_at) / 1000,
                   _noted_at(oldest_chained if oldest_chained is not None else oldest_pending))


def _noted_at(raw: str | bytes | None) -> float | None:
    if raw is None:
        return None
    try:
        at = json.loads(raw).get("at")
    except (ValueError, AttributeError):
        return None
    return at / 1000 if isinstance(at, int | float) else None
