"""`archiver audit-log verify`: read every export back and check the chain, entry by entry, across
the objects and on into the entries still in Redis, naming the first broken or missing entry.

What is read: the exports recorded in ``auditlog:exports`` (in seq order), the entries chained and
not exported yet (``auditlog:chain``) and the head (``auditlog:head``), all three in one snapshot, so
an export finishing meanwhile is not taken for a gap. Each entry must have the next seq (none
missing, none twice), its hash must be the SHA-256 of its canonical form (`worker.auditlog.canonical`),
its prev the hash of the entry before it (`GENESIS` for seq 1), and its line exactly that canonical
JSON; each object must hold the seqs it was exported with, and be the bytes exported (its SHA-256).
A recorded object that is gone is named; so is any seq no object and no Redis entry holds (an object
removed with its record leaves such a gap, and the head says how far the chain reached).

With `since`, the check starts at the first export made at or after it: that export's first entry's
prev is taken on trust (the anchor), everything after is checked as above.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from worker.auditlog.canonical import GENESIS, dumps, entry_hash
from worker.auditlog.chain import Head
from worker.auditlog.export import Export
from worker.clock import to_ms
from worker.ledger.store import Ledger
from worker.storage import Storage

REDIS = "redis (auditlog:chain)"


@dataclass(frozen=True)
class Break:
    """The first broken or missing entry: its seq, where it is (or should be: an object's key, or
    Redis), the line there (1-based; None for a whole object), and what is wrong."""

    seq: int | None
    where: str
    line: int | None
    problem: str

    def describe(self) -> str:
        place = self.where + (f" line {self.line}" if self.line is not None else "")
        return f"seq {self.seq if self.seq is not None else '?'} ({place}): {self.problem}"


@dataclass
class Verification:
    """What the check read, and the first break (None: intact)."""

    objects: int = 0
    entries: int = 0  # checked, exported or in Redis
    in_redis: int = 0  # of which chained and not exported yet
    pending: int = 0  # noted and not chained yet: not checked (no hash yet)
    first_seq: int | None = None
    last_seq: int | None = None
    first_at: int | None = None  # ms
    last_at: int | None = None
    anchor: str | None = None  # with `since`: the prev taken on trust
    broken: Break | None = None

    @property
    def intact(self) -> bool:
        return self.broken is None


class _Walk:
    """The chain read in order: the seq and hash the next entry must follow."""

    def __init__(self, report: Verification, seq: int, prev: str | None) -> None:
        self.report, self.expected, self.prev = report, seq, prev  # prev None: the anchor, trusted

    def line(self, text: str, where: str, number: int) -> Break | None:
        entry = _parse(text)
        if entry is None:
            return Break(self.expected, where, number, "not a chained entry (JSON with seq, prev, hash)")
        seq = entry["seq"]
        if seq != self.expected:
            problem = (f"missing: the line holds seq {seq}" if seq > self.expected
                       else f"out of order: the line holds seq {seq} again")
            return Break(self.expected, where, number, problem)
        if entry_hash(entry) != entry["hash"]:
            return Break(seq, where, number, "altered: its hash is not the SHA-256 of its fields")
        if self.prev is None:
            self.report.anchor = f"seq {seq}'s prev {entry['prev']} (taken on trust)"
        elif entry["prev"] != self.prev:
            return Break(seq, where, number, f"its prev is not the hash of seq {seq - 1}: this entry, or the one "
                                             "before it, was altered")
        if text != dumps(entry):
            return Break(seq, where, number, "altered: the line is not the entry's canonical JSON")
        self._count(entry)
        return None

    def _count(self, entry: dict[str, Any]) -> None:
        report = self.report
        report.entries += 1
        report.first_seq = entry["seq"] if report.first_seq is None else report.first_seq
        report.last_seq = entry["seq"]
        at = entry.get("at") if isinstance(entry.get("at"), int) else None
        report.first_at = at if report.first_at is None else report.first_at
        report.last_at = at if at is not None else report.last_at
        self.expected, self.prev = entry["seq"] + 1, entry["hash"]


def _parse(text: str) -> dict[str, Any] | None:
    try:
        entry = json.loads(text)
    except ValueError:
        return None
    if not isinstance(entry, dict) or type(entry.get("seq")) is not int:
        return None
    if not isinstance(entry.get("prev"), str) or not isinstance(entry.get("hash"), str):
        return None
    return entry


def verify_log(ledger: Ledger, storages: Storage | Callable[[str], Storage],
               since: datetime | None = None) -> Verification:
    """Check the whole chain (or, with `since`, from the first export made at or after it). Each
    export is read from the storage it was written to: `storages` gives one by name (or is the one
    storage of every export). Raises StorageUnavailable / StorageRefused when an object cannot be read
    (no verdict), and whatever `storages` raises for a storage it cannot give; redis errors."""
    storage_of = storages if callable(storages) else (lambda _: storages)
    records, chain, head, pending = _snapshot(ledger)
    exports, unreadable = _exports(records)
    if unreadable is not None:
        return Verification(pending=pending, broken=unreadable)
    report = Verification(pending=pending)
    if since is not None:  # from the first export at or after it, and every one after that
        start = next((n for n, e in enumerate(exports) if e.at >= to_ms(since)), len(exports))
        exports = exports[start:]
    walk = _Walk(report, 1, GENESIS) if since is None else _Walk(report, exports[0].first if exports else 0, None)
    for export in exports:
        report.broken = _object(walk, storage_of(export.storage), export)
        if report.broken is not None:
            return report
    if since is not None and not exports:
        if not chain:
            return report  # nothing exported since then, nothing in Redis: nothing to check
        first = _parse(chain[0])
        walk.expected = first["seq"] if first else 0
    for number, text in enumerate(chain, start=1):
        if (broken := walk.line(text, REDIS, number)) is not None:
            report.broken = broken
            return report
        report.in_redis += 1
    report.broken = _head(walk, head)
    return report


def _exports(records: list[str]) -> tuple[list[Export], Break | None]:
    """The export records, in seq order; or a break naming one that is not a record."""
    exports = []
    for raw in records:
        try:
            exports.append(Export.from_record(raw))
        except (ValueError, TypeError):
            return [], Break(None, "redis (auditlog:exports)", None, f"not an export record: {raw[:200]}")
    return exports, None


def _snapshot(ledger: Ledger) -> tuple[list[str], list[str], Head, int]:
    """The export records, the chain in Redis, the head and the count queued, read in one transaction."""
    keys = ledger.keys
    pipe = ledger.redis.pipeline(transaction=True)
    pipe.zrange(keys.auditlog_exports, 0, -1)
    pipe.lrange(keys.auditlog_chain, 0, -1)
    pipe.hgetall(keys.auditlog_head)
    pipe.llen(keys.auditlog_pending)
    records, chain, head, pending = pipe.execute()
    return cast(list[str], records), cast(list[str], chain), Head.from_hash(head), int(pending)


def _object(walk: _Walk, storage: Storage, export: Export) -> Break | None:
    """Check one exported object, line by line, against its record."""
    key = export.key
    if walk.prev is not None and export.first != walk.expected:
        gap = f"missing: no export holds seq {walk.expected}-{export.first - 1}" if export.first > walk.expected \
            else f"exported twice: {key} starts at seq {export.first}"
        return Break(walk.expected, key, None, gap)
    try:
        body = b"".join(storage.read(key))
    except FileNotFoundError:
        return Break(export.first, key, None, f"the object is gone (it held seq {export.first}-{export.last})")
    lines = body.decode("utf-8", errors="replace").split("\n")
    if lines[-1] != "":
        lines.append("")  # the last line lost its newline: the digest below says so
    for number, text in enumerate(lines[:-1], start=1):
        if (broken := walk.line(text, key, number)) is not None:
            return broken
    walk.report.objects += 1
    held = walk.expected - 1
    if held != export.last:
        return Break(held + 1 if held < export.last else export.last + 1, key, len(lines),
                     f"missing: the object ends at seq {held}, it was exported with seq {export.first}-{export.last}"
                     if held < export.last else f"the object holds seq {held}, past the {export.last} exported")
    if hashlib.sha256(body).hexdigest() != export.sha256:
        return Break(None, key, None, f"the object is not the bytes exported (sha256 {export.sha256})")
    return None


def _head(walk: _Walk, head: Head) -> Break | None:
    """The head (seq and hash of the last entry chained) must be the last entry read."""
    last = walk.expected - 1
    if head.seq > last:
        return Break(last + 1, "redis (auditlog:head)", None,
                     f"missing: the chain reached seq {head.seq}, no export and no Redis entry holds seq "
                     f"{last + 1}-{head.seq}")
    if head.seq < last or (walk.prev is not None and head.seq and head.hash != walk.prev):
        return Break(head.seq, "redis (auditlog:head)", None,
                     f"the head (seq {head.seq}, hash {head.hash}) is not the last entry read (seq {last})")
    return None
