"""Session complete: the final manifest written and ``session.archived`` announced, once.

A session's end is the later of its call's ``ended_at`` (when known) and the latest ``end_time`` of its
files. It is *settled* when a reconciliation listed its call at least `settle_after` after that end and
the listing showed no file of the session the ledger lacked (`note_listing`, from
`worker.discovery.run`; a webhook can still come later, which is why a listing is needed). It is
*complete* when it is settled and every file the ledger knows for it is archived at every destination
(its transfers ``archived``, or ``skipped``: left with Stream). Every reconciliation, incremental or
full, checks the settled sessions (`complete_settled`, from `worker.discovery.reconcile`): for each
complete one the final manifest is written, then one script marks it complete and writes
``session.archived`` to the notifications' outbox in the same step (a second check does nothing).
The keys: ``manifest:<cid>:<sid>`` and ``sessions:settled`` (`worker.ledger.keys`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, cast

import structlog

from config.logging import scrub
from worker.clock import to_ms
from worker.errors import MalformedPayload
from worker.files import StreamFile
from worker.intake.webhook import parse_timestamp
from worker.ledger import scripts as lua
from worker.ledger.announce import ANNOUNCE
from worker.notify.outbox import Outbox
from worker.runtime import Runtime
from worker.sessions.manifest import Manifests, Session, archived_files

log = structlog.get_logger(__name__)
DONE = frozenset({"archived", "skipped"})

# ARGV: prefix, "<cid>:<sid>", outbox_json, data_json  ->  1 if marked complete now (and announced), 0 if it was
COMPLETE = lua.NOW + ANNOUNCE + """
local p, name = ARGV[1], ARGV[2]
local mkey = p .. 'manifest:' .. name
if redis.call('HEXISTS', mkey, 'completed_at') == 1 then return 0 end
redis.call('HSET', mkey, 'completed_at', now)
redis.call('ZREM', p .. 'sessions:settled', name)
announce(p, ARGV[3], 'session.archived', name, ARGV[4], now)
return 1
"""


def session_named(name: str) -> Session:
    """The session of a ``<cid>:<sid>`` member (session ids hold no ``:``)."""
    call_cid, _, session_id = name.rpartition(":")
    return Session(call_cid, session_id)


def _ended_at(call: Mapping[str, Any]) -> int | None:
    try:
        return to_ms(parse_timestamp(call["ended_at"], "ended_at")) if call.get("ended_at") else None
    except MalformedPayload:
        return None


def session_end_ms(runtime: Runtime, session: Session) -> int | None:
    """The later of the call's ended_at (as last listed) and its files' latest end_time; None: no file."""
    ledger = runtime.ledger
    ends = [int(end) for fid in cast(set[str], ledger.redis.smembers(ledger.keys.session_files(session.name)))
            if (end := ledger.redis.hget(ledger.keys.file(fid), "end_time"))]
    if not ends:
        return None
    call_end = ledger.redis.hget(ledger.keys.manifest(session.name), "call_ended_at")
    return max(ends + ([int(call_end)] if call_end else []))


def note_listing(runtime: Runtime, call_cid: str, call: Mapping[str, Any], listed: Iterable[StreamFile],
                 unknown: Iterable[str], listed_at: datetime) -> None:
    """A listing of the call made at `listed_at`: `listed` its files, `unknown` the ids of those the ledger
    lacked before it. Each session of the call (the ledger's and the listing's) with no file unknown has a
    clean listing then; one listed `settle_after` past its end is settled."""
    ledger, unknown_ids = runtime.ledger, set(unknown)
    files = list(listed)
    sessions = {cast(str, s) for s in ledger.redis.smembers(ledger.keys.call_sessions(call_cid))}
    sessions |= {f.session_id for f in files if f.session_id}
    dirty = {f.session_id for f in files if f.file_id in unknown_ids}
    ended, at_ms = _ended_at(call), to_ms(listed_at)
    settle_ms = int(runtime.archive.settle_after.total_seconds() * 1000)
    for session_id in sessions - dirty:
        session = Session(call_cid, session_id)
        mkey = ledger.keys.manifest(session.name)
        if ledger.redis.hexists(mkey, "completed_at"):
            continue
        ledger.redis.hset(mkey, mapping={"clean_listing_at": at_ms, **({"call_ended_at": ended} if ended else {})})
        end = session_end_ms(runtime, session)
        if end is not None and at_ms >= end + settle_ms:
            ledger.redis.zadd(ledger.keys.sessions_settled, {session.name: at_ms}, nx=True)


def is_archived(runtime: Runtime, session: Session) -> bool:
    """Every transfer of every file the ledger knows for the session is archived (or left with Stream),
    and at least one is archived."""
    ledger, states = runtime.ledger, []
    for file_id in cast(set[str], ledger.redis.smembers(ledger.keys.session_files(session.name))):
        for tid in ledger.transfers_of(file_id):
            states.append(cast(str | None, ledger.redis.hget(ledger.keys.transfer(tid), "state")))
        if ledger.redis.hget(ledger.keys.file(file_id), "routing") == "pending":
            return False
    return "archived" in states and all(s in DONE for s in states)


def complete_settled(runtime: Runtime) -> list[str]:
    """Complete each settled session whose files are all archived; the notifications' deliveries to queue."""
    ledger = runtime.ledger
    script = ledger.redis.register_script(COMPLETE)
    deliveries: list[str] = []
    for name in (str(n) for n in cast(list[Any], ledger.redis.zrange(ledger.keys.sessions_settled, 0, -1))):
        session = session_named(name)
        try:
            if is_archived(runtime, session) and _complete(runtime, session, script):
                deliveries += Outbox(ledger).due_for("session.archived", name)
        except Exception as exc:  # noqa: BLE001 - one session's storage down must not stop the others
            log.warning("session_complete_failed", call_cid=session.call_cid, session_id=session.session_id,
                        error=scrub(str(exc)))
    return deliveries


def _complete(runtime: Runtime, session: Session, script: Any) -> bool:
    """The final manifest written, then the session marked complete and announced; False if it was already."""
    ledger = runtime.ledger
    written = Manifests(runtime).rewrite(session, final=True)
    if written is None:  # a worker is writing it (a file just archived): the next reconciliation completes it
        return False
    files = archived_files(runtime, session)
    data = {"call_cid": session.call_cid, "session_id": session.session_id, "manifest_key": written.key,
            "files": files}
    if not script(args=[ledger.prefix, session.name, ledger.outbox, json.dumps(data)]):
        return False
    log.info("session_archived", call_cid=session.call_cid, session_id=session.session_id,
             manifest_key=written.key, files=len(files))
    return True
