"""Legal holds on calls (`archiver hold`, `archiver hold --release`).

A hold lives in the ledger (``hold:<cid>``: reason, at, by; the call in ``holds``) and, where the store
keeps holds (``capabilities.legal_hold``), on every version of every object the archiver wrote for the
call (`Storage.set_legal_hold`: S3 Object Lock legal hold, GCS temporary hold, Azure legal hold). The
ledger's hold is placed first, so that from that moment nothing of the call is pruned (the PRUNE script
checks it), deleted from Stream (`worker.discovery.deletion`) or erased (`worker.compliance.erase`);
the store's hold also stops anyone else with delete rights (a lifecycle rule, an operator's mistake).
A release clears the store's holds first and removes the ledger's only when every one was cleared: a
hold still on an object keeps the call held in the ledger too, and the release can be run again.

Session manifests are not held: the archiver rewrites them as a session fills (they list the files,
which are held). An object archived after the hold carries the ledger's hold only: run the hold again
to hold it at the store too (holding is idempotent). Every step is noted in the audit log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, cast

import structlog

from worker.auditlog import note
from worker.compliance.calls import StorageOf, call_files, ours
from worker.errors import ArchiverError
from worker.ledger.models import Transfer
from worker.ledger.store import Ledger

log = structlog.get_logger(__name__)

ObjectOutcome = Literal["held", "released", "ledger_only", "no_object", "failed"]


@dataclass(frozen=True)
class Hold:
    call_cid: str
    reason: str
    at: int  # ms
    by: str


@dataclass(frozen=True)
class HeldObject:
    """What holding (or releasing) one object did."""

    transfer_id: str
    storage: str
    key: str
    outcome: ObjectOutcome
    detail: str = ""
    versions: tuple[str, ...] = ()


@dataclass
class HoldReport:
    call_cid: str
    on: bool
    objects: list[HeldObject] = field(default_factory=list)
    in_ledger: bool = False  # whether the ledger holds the call once done

    @property
    def failed(self) -> list[HeldObject]:
        return [o for o in self.objects if o.outcome == "failed"]


def hold_of(ledger: Ledger, call_cid: str) -> Hold | None:
    """The call's hold in the ledger, or None."""
    h = cast(dict[str, str], ledger.redis.hgetall(ledger.keys.hold(call_cid)))
    return Hold(call_cid, h.get("reason", ""), int(h.get("at") or 0), h.get("by", "")) if h else None


def held_calls(ledger: Ledger, call_cids: Iterable[str]) -> set[str]:
    """Those of `call_cids` on hold, in one round trip."""
    cids = sorted(set(call_cids))
    pipe = ledger.redis.pipeline(transaction=False)
    for cid in cids:
        pipe.exists(ledger.keys.hold(cid))
    return {cid for cid, found in zip(cids, pipe.execute(), strict=True) if found}


def _one(storage_of: StorageOf, transfer: Transfer, on: bool) -> HeldObject:
    done: ObjectOutcome = "held" if on else "released"
    try:
        storage = storage_of(transfer.storage)
        if not storage.capabilities.legal_hold:
            return HeldObject(transfer.id, transfer.storage, transfer.key, "ledger_only",
                              f"{storage.storage_type} storage keeps no legal holds: the ledger's hold is all there is")
        versions = storage.set_legal_hold(transfer.key, on)
    except FileNotFoundError:
        if transfer.state != "archived":  # nothing written yet: nothing to hold at the store
            return HeldObject(transfer.id, transfer.storage, transfer.key, "no_object", f"{transfer.state}, no object")
        return HeldObject(transfer.id, transfer.storage, transfer.key, "failed", "the archived object is missing")
    except (ArchiverError, KeyError, ValueError) as exc:
        return HeldObject(transfer.id, transfer.storage, transfer.key, "failed", str(exc) or type(exc).__name__)
    return HeldObject(transfer.id, transfer.storage, transfer.key, done, versions=tuple(str(v.version or "")
                                                                                      for v in versions))


def _each_object(ledger: Ledger, storage_of: StorageOf, call_cid: str, on: bool, reason: str) -> list[HeldObject]:
    action = "hold" if on else "release"
    done = []
    for file in call_files(ledger, call_cid):
        for transfer in (t for t in file.transfers if ours(t)):
            result = _one(storage_of, transfer, on)
            done.append(result)
            note(ledger, action, call_cid=call_cid, transfer_id=transfer.id, storage=transfer.storage,
                 key=transfer.key, version_id=",".join(result.versions) or None, reason=reason or None,
                 outcome=result.outcome if not result.detail else f"{result.outcome}: {result.detail}")
            (log.error if result.outcome == "failed" else log.info)(
                f"legal_{action}", call_cid=call_cid, transfer_id=transfer.id, storage=transfer.storage,
                key=transfer.key, outcome=result.outcome, detail=result.detail)
    return done


def place_hold(ledger: Ledger, storage_of: StorageOf, call_cid: str, *, reason: str, by: str) -> HoldReport:
    """Hold the call: in the ledger first, then every object of it at its store (see the module docstring).
    A hold already there keeps its time and reason unless `reason` is given."""
    key, at = ledger.keys.hold(call_cid), ledger.now_ms()
    pipe = ledger.redis.pipeline(transaction=True)
    pipe.hsetnx(key, "at", at)
    pipe.hset(key, mapping={"by": by, **({"reason": reason} if reason else {})})
    pipe.hsetnx(key, "reason", "")
    pipe.zadd(ledger.keys.holds, {call_cid: at}, nx=True)
    pipe.execute()
    note(ledger, "hold", call_cid=call_cid, reason=reason or None, by=by, outcome="held in the ledger")
    return HoldReport(call_cid, True, _each_object(ledger, storage_of, call_cid, True, reason), in_ledger=True)


def release_hold(ledger: Ledger, storage_of: StorageOf, call_cid: str, *, by: str) -> HoldReport:
    """Release the call: every object's store hold, then the ledger's when none failed."""
    report = HoldReport(call_cid, False, _each_object(ledger, storage_of, call_cid, False, ""), in_ledger=True)
    if report.failed:
        note(ledger, "release", call_cid=call_cid, by=by, outcome="kept in the ledger: a store hold was not released")
        return report
    pipe = ledger.redis.pipeline(transaction=True)
    pipe.delete(ledger.keys.hold(call_cid))
    pipe.zrem(ledger.keys.holds, call_cid)
    pipe.execute()
    note(ledger, "release", call_cid=call_cid, by=by, outcome="released in the ledger")
    report.in_ledger = False
    return report
