"""What an erasure removes from the ledger once a file's copies are gone, and what it keeps.

Removed: the file's transfers (hash and every index: ``transfers``, ``state:*``, ``due``, ``expiry``,
``running:<storage>``), its entry in ``keyowner:<storage>`` (the object is gone), its record and the
``find`` index (`worker.ledger.index.remove_from_index`, ``call_files:`` included), its session's set,
and the notifications about its transfers still in the outbox (``notify:event`` / ``delivery`` /
``attempts``, and their ``notify:due`` / ``notify:state:*`` entries). For an erased session, its
manifest record, its ``session.archived`` notification, and its place in ``sessions:<cid>`` and
``sessions:settled``. For a whole call, its cached call data (``call:<cid>``).

Kept: ``erased:<fid>``, set *before* anything is deleted (`mark_erased`), so that intake never records
the file again, even when Stream's own copy could not be deleted and a reconciliation lists it; it
expires when Stream can no longer hold the file (its ``expires_at``, plus one more `retention`). The
proof of what was erased, when and by whom is the audit log (`worker.auditlog`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import timedelta

from worker.clock import seconds_to_ms
from worker.ledger.calls import session_event
from worker.ledger.index import remove_from_index
from worker.ledger.models import STATES, Transfer
from worker.ledger.store import Ledger
from worker.notify.outbox import STATES as DELIVERY_STATES
from worker.notify.outbox import event_id

EVENT_TYPES = tuple(f"file.{state}" for state in (*STATES, "at_risk"))


def mark_erased(ledger: Ledger, file_id: str, fields: dict[str, str], retention: timedelta, *, by: str) -> None:
    """Remember that the file was erased (``erased:<fid>``) until Stream can no longer hold it."""
    now = ledger.now_ms()
    until = max(int(fields.get("expires_at") or 0), now) + seconds_to_ms(retention.total_seconds())
    record = {"call_cid": fields.get("call_cid", ""), "session_id": fields.get("session_id", ""), "at": now, "by": by}
    ledger.redis.set(ledger.keys.erased(file_id), json.dumps(record, sort_keys=True), pxat=until)


def forget_events(ledger: Ledger, subjects: Iterable[tuple[str, str]]) -> int:
    """Delete the outbox's events about `subjects` ((type, subject) pairs) with their deliveries; how many."""
    eids = [event_id(etype, subject) for etype, subject in subjects]
    pipe = ledger.redis.pipeline(transaction=False)
    for eid in eids:
        pipe.hget(ledger.keys.notify_event(eid), "deliveries")
    found = [(eid, str(d or "")) for eid, d in zip(eids, pipe.execute(), strict=True) if d is not None]
    pipe = ledger.redis.pipeline(transaction=True)
    for eid, deliveries in found:
        for did in filter(None, deliveries.split(",")):
            pipe.delete(ledger.keys.notify_delivery(did), ledger.keys.notify_attempts(did))
            pipe.zrem(ledger.keys.notify_due, did)
            for state in DELIVERY_STATES:
                pipe.zrem(ledger.keys.notify_state(state), did)
        pipe.delete(ledger.keys.notify_event(eid))
    pipe.execute()
    return len(found)


def forget_file(ledger: Ledger, file_id: str, fields: dict[str, str], transfers: Iterable[Transfer]) -> None:
    """Remove the file, its transfers, index entries and notifications from the ledger (module docstring)."""
    transfers = list(transfers)
    remove_from_index(ledger, file_id)
    forget_events(ledger, [(etype, t.id) for t in transfers for etype in EVENT_TYPES])
    k = ledger.keys
    pipe = ledger.redis.pipeline(transaction=True)
    for t in transfers:
        pipe.delete(k.transfer(t.id))
        for zset in (k.transfers, k.due, k.expiry, k.running(t.storage), *(k.state(s) for s in STATES)):
            pipe.zrem(zset, t.id)
    pipe.delete(k.file(file_id), k.file_transfers(file_id))
    pipe.zrem(k.unrouted, file_id)
    if fields.get("session_id"):
        pipe.srem(k.session_files(f"{fields.get('call_cid', '')}:{fields['session_id']}"), file_id)
    pipe.execute()
    for t in transfers:  # only where this file owns the key (one key, one file)
        if t.key and ledger.redis.hget(k.key_owner(t.storage), t.key) == file_id:
            ledger.redis.hdel(k.key_owner(t.storage), t.key)


def forget_session(ledger: Ledger, call_cid: str, session_id: str) -> None:
    """Remove an erased session's manifest record, its notification and its place in the call's sets."""
    name = f"{call_cid}:{session_id}"
    forget_events(ledger, [session_event(call_cid, session_id)])
    k = ledger.keys
    pipe = ledger.redis.pipeline(transaction=True)
    pipe.delete(k.manifest(name))  # its lock expires by itself: a writer holding it finds no record
    pipe.zrem(k.sessions_settled, name)
    if not ledger.redis.scard(k.session_files(name)):
        pipe.delete(k.session_files(name))
        pipe.srem(k.call_sessions(call_cid), session_id)
    pipe.execute()


def forget_call(ledger: Ledger, call_cid: str) -> None:
    """What is left of a whole erased call: its cached call data, its empty session set."""
    ledger.redis.delete(ledger.keys.call(call_cid))
    if not ledger.redis.scard(ledger.keys.call_sessions(call_cid)):
        ledger.redis.delete(ledger.keys.call_sessions(call_cid))
