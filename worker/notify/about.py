"""The notifications about a call: found by their ids, which are derived from (type, subject)
(`worker.notify.outbox.event_id`), so no index is needed. The subjects of a call are its transfers
(``file.*`` events), the failures Stream reported about it (``stream.failure``: the kept ones,
`Ledger.stream_failures`) and, once they are sent, its sessions (``session.archived``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from config.notify import EVENT_TYPES
from worker.ledger.store import Ledger
from worker.notify.outbox import Delivery, Event, event_id

FILE_EVENTS = tuple(t for t in EVENT_TYPES if t.startswith("file."))
FAILURES_READ = 1000  # the newest failures Stream reported searched for the call's


@dataclass(frozen=True)
class Sent:
    """One event about the call, with its deliveries (one per endpoint that wanted it)."""

    event: Event
    deliveries: tuple[Delivery, ...]


def subjects_of(ledger: Ledger, call_cids: Iterable[str], transfer_ids: Iterable[str],
                sessions: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """(event type, subject) of every event that could be about the call(s): each transfer's file
    events, each kept failure of the call, and each (type, subject) of `sessions`."""
    cids = set(call_cids)
    found = [(etype, tid) for tid in transfer_ids for etype in FILE_EVENTS]
    for record in ledger.stream_failures(FAILURES_READ):
        if record.get("call_cid") in cids:
            found.append(("stream.failure", ledger.failure_marker(record)[len(ledger.prefix):]))
    return found + list(sessions)


def events_about(ledger: Ledger, subjects: Iterable[tuple[str, str]]) -> list[Sent]:
    """The events of `subjects` the outbox holds, oldest first, each with its deliveries and attempts."""
    ids = list(dict.fromkeys(event_id(etype, subject) for etype, subject in subjects))
    pipe = ledger.redis.pipeline(transaction=False)
    for eid in ids:
        pipe.hgetall(ledger.keys.notify_event(eid))
    hashes = [h for h in cast(list[dict[str, str]], pipe.execute()) if h]
    events = [Event.from_hash(h) for h in hashes]
    dids = {h["id"]: [d for d in h.get("deliveries", "").split(",") if d] for h in hashes}
    pipe = ledger.redis.pipeline(transaction=False)
    for e in events:
        for did in dids[e.id]:
            pipe.hgetall(ledger.keys.notify_delivery(did))
            pipe.lrange(ledger.keys.notify_attempts(did), 0, -1)
    answers = iter(pipe.execute())
    sent = []
    for e in events:
        deliveries = []
        for _ in dids[e.id]:
            h, attempts = cast(dict[str, str], next(answers)), cast(list[str], next(answers))
            if h:
                deliveries.append(Delivery.from_hash(h, [json.loads(a) for a in attempts]))
        sent.append(Sent(e, tuple(deliveries)))
    return sorted(sent, key=lambda s: (s.event.created_at is None, s.event.created_at, s.event.id))
