"""The tamper-evident audit log (issue 17; docs/audit-log.md): every archive, deletion from Stream,
prune, retry, hold, release and erasure leaves an entry, and each entry's hash covers the one before.

- entries are queued (``auditlog:pending``) in the same step as the change they record: by the ledger's
  scripts (`worker.ledger.audit_entries`), or by `note` for a change Python makes;
- `chain` seals them in order (seq, prev, hash; the canonical form is in `canonical`);
- `export` writes the chained entries out as a new JSONL object every `audit_log_every`, then trims
  them from Redis;
- `verify` reads the exports back and checks the chain (`archiver audit-log verify`);
- `figures` are what /metrics shows of it.
"""

from __future__ import annotations

from worker.clock import now_ms
from worker.ledger.audit_entries import Value, pending_entry
from worker.ledger.store import Ledger

Field = Value


def note(ledger: Ledger, action: str, **fields: Field) -> None:
    """Queue an entry for the audit log: `action` (e.g. ``hold``, ``release``, ``erase``) and its
    `fields` (call_cid, transfer_id, storage, key, reason…; None ones are left out), stamped with the
    time (ms) and, unless given, the ledger's `actor` (cli, scheduler, worker). Raises ValueError for
    a field the log sets itself (action, at, seq, prev, hash), TypeError for a value that is not a
    string, an integer or a boolean."""
    fields.setdefault("actor", ledger.actor)
    ledger.redis.rpush(ledger.keys.auditlog_pending, pending_entry(action, now_ms(), fields))
