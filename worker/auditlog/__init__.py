"""The tamper-evident audit log (issue 17): every archive, deletion from Stream, prune, retry, hold,
release and erasure leaves an entry. `note` is how the archiver's Python code records one; it only
queues the entry (``auditlog:pending``), in the order noted, for the chain to take up.
"""

from __future__ import annotations

import json

from worker.clock import now_ms
from worker.ledger.store import Ledger

Field = str | int | bool | None


def note(ledger: Ledger, action: str, **fields: Field) -> None:
    """Queue an entry for the audit log: `action` (e.g. ``hold``, ``release``, ``erase``) and its
    `fields` (call_cid, transfer_id, storage, key, reason…), stamped with the time (ms)."""
    entry = {"action": action, "at": now_ms(), **{k: v for k, v in fields.items() if v is not None}}
    ledger.redis.rpush(ledger.keys.auditlog_pending, json.dumps(entry, sort_keys=True, separators=(",", ":")))
