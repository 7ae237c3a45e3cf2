"""Exports: the chained entries written out as a new plain JSONL object, one line per entry, then
trimmed from Redis (`export_log`; the scheduler every `audit_log_every`, `archiver audit-log export`).

An export is planned first (``exporting`` in ``auditlog:head``: its key, first and last seq), then
written create-only (never over an object, so write-once where the storage keeps objects so), read
back and verified, and only then recorded (``auditlog:exports``) and trimmed from ``auditlog:chain``,
in one script that checks the plan is still the one under way. A crash anywhere redoes the same plan:
the same lines to the same key, where the object already written counts as done. One process exports
at a time (``auditlog:export_lock``, which lapses after `LOCK_TTL` if its holder died; the plan and the
scripts' checks keep even two at once from exporting an entry twice). A key holding other bytes (an
export of an earlier ledger, say) is never written over: the next of ``<key>.2.jsonl``…
``<key>.9.jsonl`` is used. Nothing new: nothing written.

Keys: ``audit-log/<yyyy>/<mm>/<dd>/<first seq>-<last seq>.jsonl`` (the day the export was planned,
UTC; seqs as 12 digits, so the keys sort in chain order within a day).
"""

from __future__ import annotations

import json
from contextlib import suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, cast

import structlog
from redis.exceptions import LockError

from worker.auditlog.canonical import dumps
from worker.auditlog.chain import Head, chain_pending
from worker.errors import AuditLogError, KeyTaken
from worker.ledger.store import Ledger
from worker.scheduler import PeriodicJob
from worker.storage import Storage
from worker.storage.checksums import Hasher

if TYPE_CHECKING:
    from worker.runtime import Runtime

log = structlog.get_logger(__name__)

PREFIX = "audit-log/"
CONTENT_TYPE = "application/jsonl"
MAX_ENTRIES = 100_000  # lines per object (~30 MB): a larger backlog goes out as several objects
OTHER_KEYS = 9  # <key>, then <key>.2 … <key>.9 when a key holds other bytes
LOCK_TTL = 600.0  # seconds: an export holding the lock longer than this is taken for dead

# ARGV: prefix, exported_seq (expected), plan_json  ->  1 planned | 0 a plan is under way, or an export finished
PLAN = """
local head = ARGV[1] .. 'auditlog:head'
local h = redis.call('HMGET', head, 'exported_seq', 'exporting')
if (h[1] or '0') ~= ARGV[2] or h[2] then return 0 end
redis.call('HSET', head, 'exporting', ARGV[3])
return 1
"""

# ARGV: prefix, plan_json, key, record_json, count, first_seq, last_seq, last_line, last_hash
#   ->  1 recorded and trimmed | 0 that plan is no longer under way (another process finished it) | -1 the
#   chain in Redis does not end the plan with last_line
DONE = """
local p, n = ARGV[1], tonumber(ARGV[5])
local head, chain = p .. 'auditlog:head', p .. 'auditlog:chain'
if redis.call('HGET', head, 'exporting') ~= ARGV[2] then return 0 end
if redis.call('LINDEX', chain, n - 1) ~= ARGV[8] then return -1 end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('LTRIM', chain, n, -1)
redis.call('HSET', head, 'exported_seq', ARGV[7], 'exported_hash', ARGV[9], 'exported_key', ARGV[3],
           'exported_at', now)
redis.call('HDEL', head, 'exporting')
redis.call('ZADD', p .. 'auditlog:exports', tonumber(ARGV[6]), ARGV[4])
return 1
"""


@dataclass(frozen=True)
class Export:
    """One object written: its key, the seqs of its first and last entries, its size and SHA-256,
    when it was planned (ms), and the storage it went to (`audit_log_storage` then). As recorded in
    ``auditlog:exports``."""

    key: str
    first: int
    last: int
    entries: int
    bytes: int
    sha256: str
    at: int
    storage: str

    def record(self) -> str:
        return dumps(asdict(self))

    @classmethod
    def from_record(cls, raw: str) -> Export:
        return cls(**json.loads(raw))


def export_key(first: int, last: int, at_ms: int) -> str:
    day = datetime.fromtimestamp(at_ms / 1000, UTC)
    return f"{PREFIX}{day:%Y/%m/%d}/{first:012d}-{last:012d}.jsonl"


def export_log(ledger: Ledger, storage: Storage, *, max_entries: int = MAX_ENTRIES, wait: float = 0.0
               ) -> list[Export]:
    """Chain what is queued, then export every chained entry into `storage` (one object per
    `max_entries`); the exports this call recorded (none when nothing was new). When another process
    is exporting, wait up to `wait` seconds for it: with none, return [] at once (logged); after a
    wait, raise AuditLogError. Raises AuditLogError when an export cannot be written or verified
    (nothing is trimmed: the next call redoes it), StorageUnavailable / StorageRefused, redis errors."""
    chain_pending(ledger)
    lock = ledger.redis.lock(ledger.keys.auditlog_export_lock, timeout=LOCK_TTL, blocking=wait > 0,
                             blocking_timeout=wait or None)
    if not lock.acquire():
        if wait:
            raise AuditLogError(f"another process has been exporting the audit log for over {wait:.0f}s")
        log.info("audit_log_export_skipped", reason="another process is exporting")
        return []
    written: list[Export] = []
    try:
        while (step := _step(ledger, storage, max_entries)) is not None:
            if isinstance(step, Export):
                written.append(step)
    finally:
        with suppress(LockError):  # it lapsed (LOCK_TTL): the plan keeps the export right regardless
            lock.release()
    return written


def _step(ledger: Ledger, storage: Storage, max_entries: int) -> Export | Literal["again"] | None:
    """Export (or finish exporting) one object: the Export when this process recorded it, "again"
    when another process planned or recorded first, None when nothing is left to export."""
    head = Head.read(ledger)
    plan_json = head.exporting or _plan(ledger, head, max_entries)
    if plan_json is None:
        return None
    if plan_json == "again":
        return "again"
    plan = json.loads(plan_json)
    first, last = int(plan["first"]), int(plan["last"])
    lines = cast(list[str], ledger.redis.lrange(ledger.keys.auditlog_chain, 0, last - first))
    if len(lines) != last - first + 1 or _seq(lines[0]) != first or _seq(lines[-1]) != last:
        raise AuditLogError(f"the export under way ({plan['key']}: seq {first}-{last}) no longer matches the "
                            f"entries in Redis ({ledger.keys.auditlog_chain})")
    body = ("\n".join(lines) + "\n").encode("utf-8")  # ASCII as chained; UTF-8 whatever Redis holds
    key, sha256 = _write(storage, str(plan["key"]), body)
    export = Export(key, first, last, len(lines), len(body), sha256, int(plan["at"]), storage.name)
    done = ledger.redis.register_script(DONE)
    answer = int(cast(int, done(args=[ledger.prefix, plan_json, key, export.record(), len(lines), first, last,
                                      lines[-1], json.loads(lines[-1])["hash"]])))
    if answer == -1:
        raise AuditLogError(f"the entries in Redis changed while {key} was written: not trimmed")
    if answer == 0:
        return "again"
    log.info("audit_log_exported", key=key, storage=storage.name, first_seq=first, last_seq=last,
             entries=len(lines), sha256=sha256)
    return export


def _plan(ledger: Ledger, head: Head, max_entries: int) -> str | Literal["again"] | None:
    """Plan the next export (its JSON), or None when no entry waits."""
    lines = cast(list[str], ledger.redis.lrange(ledger.keys.auditlog_chain, 0, max_entries - 1))
    if not lines:
        return None
    first, last = _seq(lines[0]), _seq(lines[-1])
    if first != head.exported_seq + 1:
        raise AuditLogError(f"the chain in Redis starts at seq {first}, but the last export ended at seq "
                            f"{head.exported_seq}: entries are missing; `archiver audit-log verify` names them")
    at = ledger.now_ms()
    plan_json = dumps({"key": export_key(first, last, at), "first": first, "last": last, "at": at})
    planned = ledger.redis.register_script(PLAN)(args=[ledger.prefix, head.exported_seq, plan_json])
    return plan_json if int(cast(int, planned)) == 1 else "again"


def _seq(line: str) -> int:
    return int(json.loads(line)["seq"])


def _write(storage: Storage, key: str, body: bytes) -> tuple[str, str]:
    """Write `body` create-only at `key` (or the first of its other keys free or already holding
    `body`), verify it, and return (the key, the SHA-256)."""
    native = storage.native_checksum_for(len(body))
    hasher = Hasher((native,) if native else ())
    hasher.update(body)
    digests = hasher.digests()
    for n in range(1, OTHER_KEYS + 1):
        candidate = key if n == 1 else f"{key.removesuffix('.jsonl')}.{n}.jsonl"
        try:
            with storage.open_writer(candidate, content_type=CONTENT_TYPE, size_hint=len(body),
                                     metadata={"sha256": digests.sha256}) as writer:
                writer.write(body)
                writer.commit(digests)
        except KeyTaken:
            if _holds(storage, candidate, body):
                return candidate, digests.sha256  # this export, written before a crash (or by another process)
            log.error("audit_log_key_taken", key=candidate, storage=storage.name,
                      note="another object is there: never written over; the next key is tried")
            continue
        problem = storage.verify(candidate, len(body), digests.sha256)
        if problem is not None:
            raise AuditLogError(f"the export {candidate} was written but does not read back: {problem}")
        return candidate, digests.sha256
    raise AuditLogError(f"{key} and its {OTHER_KEYS - 1} other keys all hold other objects: export not written")


def _holds(storage: Storage, key: str, body: bytes) -> bool:
    """Whether the object at `key` is exactly `body`."""
    got = bytearray()
    for chunk in storage.read(key):
        got += chunk
        if len(got) > len(body):
            return False
    return bytes(got) == body


def export_job(runtime: Runtime) -> PeriodicJob:
    """The scheduler's export, every `audit_log_every` (its own period, however short), into
    `audit_log_storage` (the first storage of `default_storage` when unset)."""
    archive = runtime.archive
    name = archive.audit_log_storage_name()
    return PeriodicJob("audit_log_export", archive.audit_log_every.total_seconds(),
                       lambda: export_log(runtime.ledger, runtime.storage(name)))

