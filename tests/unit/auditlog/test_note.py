"""`note` queues audit-log entries in the order noted, with their time, and leaves out empty fields."""

from __future__ import annotations

import json

from worker.auditlog import note
from worker.ledger.store import Ledger


def test_entries_are_queued_in_order_with_their_time(ledger: Ledger) -> None:
    note(ledger, "hold", call_cid="default:a", reason="litigation 42")
    note(ledger, "release", call_cid="default:a", reason=None)
    entries = [json.loads(raw) for raw in ledger.redis.lrange(ledger.keys.auditlog_pending, 0, -1)]
    assert [e["action"] for e in entries] == ["hold", "release"]
    assert entries[0]["reason"] == "litigation 42" and "reason" not in entries[1]
    assert all(isinstance(e["at"], int) and e["call_cid"] == "default:a" for e in entries)
