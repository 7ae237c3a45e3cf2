"""One file, judged at each of its destinations (the verdicts of `worker.audit.model`).

An archived transfer's object is checked in its storage, paced (`worker.audit.pacing`): a stat
(present, and the size archived; a SHA-256 the store replaces with every write is compared too),
or with `deep` the whole object read back and hashed, trusting nothing the store keeps about it.
A ``missing`` or ``mismatch`` object whose file Stream still holds is queued again at once
(`Ledger.requeue_archived`, reason ``object_changed``); otherwise `detail` says why it cannot be.

Whether Stream still holds a file is asked only when a verdict depends on it (`Holds`: True,
False, or None when nobody can tell, e.g. a kind Stream does not list). A transfer not archived
is ``unarchived`` while Stream holds the file (``at_risk`` within `at_risk_margin` of its
deletion); once Stream's deadline has passed without it, ``lost``; Stream no longer listing it
before its deadline makes it ``at_risk``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import structlog

from config.logging import scrub
from worker.audit.model import AuditCounts, AuditRow, Verdict
from worker.audit.pacing import Pacer
from worker.clock import from_ms, rfc3339, to_ms
from worker.discovery.model import format_span
from worker.ledger.calls import CallFile
from worker.ledger.models import Transfer
from worker.runtime import Runtime
from worker.storage import Storage
from worker.storage.checksums import Hasher

log = structlog.get_logger(__name__)
Holds = Callable[[], bool | None]
NOT_ARCHIVED = frozenset({"queued", "transferring", "failed"})


@dataclass
class Judge:
    """Judges files for one audit: its storages' reads, its clock (`now_ms`) and its counts."""

    runtime: Runtime
    pacer: Pacer
    deep: bool
    now_ms: int
    counts: AuditCounts
    requeued: list[str] = field(default_factory=list)  # transfers queued again since the caller last took them

    @property
    def margin_ms(self) -> int:
        return int(self.runtime.archive.at_risk_margin.total_seconds() * 1000)

    def file(self, file: CallFile, holds: Holds) -> list[AuditRow]:
        """One row per destination of `file` (a file the ledger knows); a file waiting for its
        routes gets one row with no storage. Routes to ``stream-s3`` (skipped) get none."""
        self.counts.files += 1
        held = _Once(holds)
        if not file.transfers and file.fields.get("routing") == "pending":
            why = file.fields.get("routing_error") or "its call's data is not looked up yet"
            return [self.waiting(file, held, f"waiting for its routes ({why})", None)]
        rows = [self.transfer(file, t, held) for t in file.transfers if t.state != "skipped"]
        return [row for row in rows if row is not None]

    def transfer(self, file: CallFile, transfer: Transfer, held: Holds) -> AuditRow | None:
        if transfer.state == "archived":
            verdict, detail = self.check(transfer)
            if verdict in ("missing", "mismatch"):
                detail = f"{detail}; {self.repair(transfer, detail, held())}"
            return _row(file, transfer, verdict, detail)
        if transfer.state == "lost":
            return _row(file, transfer, "lost", transfer.error or "Stream no longer had the file; never archived")
        if transfer.state in NOT_ARCHIVED:
            state = f"{transfer.state} (attempt {transfer.attempts}" + (f": {transfer.error})" if transfer.error
                                                                        else ")")
            return self.waiting(file, held, state, transfer)
        return None

    def waiting(self, file: CallFile, held: Holds, state: str, transfer: Transfer | None) -> AuditRow:
        """A file not archived (at one destination, or anywhere while it waits for its routes)."""
        expires_ms = _expires_ms(file, transfer)
        if expires_ms is None:
            return _row(file, transfer, "unarchived", f"{state}; its deadline at Stream is unknown")
        left = f"Stream deletes it at {rfc3339(from_ms(expires_ms))} ({_span(expires_ms - self.now_ms)} left)"
        holds = held()
        if holds is not True and expires_ms <= self.now_ms:
            return _row(file, transfer, "lost", f"{state}; Stream's deadline passed "
                                                f"{rfc3339(from_ms(expires_ms))}: never archived here")
        if holds is False:
            return _row(file, transfer, "at_risk", f"{state}; Stream no longer lists the file: it is lost unless "
                                                   f"Stream lists it again ({left})")
        verdict: Verdict = "at_risk" if expires_ms <= self.now_ms + self.margin_ms else "unarchived"
        return _row(file, transfer, verdict, f"{state}; {left}")

    def check(self, transfer: Transfer) -> tuple[Verdict, str]:
        """The object's verdict: ok, missing, mismatch, or unchecked when the storage cannot say."""
        if transfer.bytes is None or (self.deep and not transfer.sha256):
            return "mismatch", f"transfer {transfer.id} is archived but the ledger kept no size or SHA-256"
        self.pacer.wait()
        self.counts.objects += 1
        try:
            storage = self.runtime.storage(transfer.storage)
            return self.read_back(storage, transfer) if self.deep else self.stat(storage, transfer)
        except FileNotFoundError:
            return "missing", f"no object at {_where(self.runtime, transfer)}"
        except Exception as exc:  # noqa: BLE001 - a check that cannot be made proves nothing: reported, not fatal
            log.warning("audit_object_unchecked", transfer_id=transfer.id, storage=transfer.storage,
                        key=transfer.key, error=str(exc))
            return "unchecked", f"{type(exc).__name__}: {exc}"

    def stat(self, storage: Storage, transfer: Transfer) -> tuple[Verdict, str]:
        return stat_verdict(storage, transfer.key, transfer.bytes, transfer.sha256)

    def read_back(self, storage: Storage, transfer: Transfer) -> tuple[Verdict, str]:
        return read_back_verdict(storage, transfer.key, transfer.bytes, transfer.sha256,
                                 int(self.runtime.archive.transfer.read_chunk))

    def repair(self, transfer: Transfer, problem: str, holds: bool | None) -> str:
        """Queue a missing or changed object again when Stream still holds its file; what was done."""
        if holds is None:
            return "whether Stream still holds the file is unknown: not queued again"
        if not holds:
            return "Stream no longer holds the file: it cannot be archived again"
        if not self.runtime.ledger.requeue_archived(transfer.id, f"audit: {problem}"):
            return "not queued again: the ledger changed meanwhile"
        self.counts.requeued += 1
        self.requeued.append(transfer.id)
        log.error("audit_requeued", transfer_id=transfer.id, storage=transfer.storage, key=transfer.key,
                  call_cid=transfer.call_cid, reason=problem)
        return "queued again (Stream still holds the file)"


def stat_verdict(storage: Storage, key: str, size: int | None, sha256: str | None) -> tuple[Verdict, str]:
    """A stat's verdict on the object archived at `key` (`size` bytes, `sha256`): ``ok``, or ``mismatch``
    when its size differs, or a SHA-256 the store replaces with every write differs. Raises
    FileNotFoundError (``missing``) and the storage's errors."""
    stored = storage.stat(key)
    where = f"{storage.describe()}{key}"
    if stored.size != size:
        return "mismatch", f"{where} holds {stored.size} bytes, {size} were archived"
    found = stored.checksums.get("sha256") if "sha256" in storage.capabilities.content_checksums else None
    if found is not None and sha256 and found != sha256:
        return "mismatch", f"{where} has sha256 {found} (the store's), {sha256} was archived"
    return "ok", ""


def read_back_verdict(storage: Storage, key: str, size: int | None, sha256: str | None,
                      chunk_size: int = 1 << 20) -> tuple[Verdict, str]:
    """``--deep``: the object read back and hashed, trusting nothing the store keeps about it."""
    hasher = Hasher(())
    for chunk in storage.read(key, chunk_size):
        hasher.update(chunk)
    digests, where = hasher.digests(), f"{storage.describe()}{key}"
    if digests.size != size:
        return "mismatch", f"{where} holds {digests.size} bytes, {size} were archived"
    if digests.sha256 != sha256:
        return "mismatch", f"{where} has sha256 {digests.sha256} (read back), {sha256} was archived"
    return "ok", "sha256 verified"


class _Once:
    """`holds`, asked at most once (it may cost a listing of the call)."""

    def __init__(self, holds: Holds) -> None:
        self.holds = holds
        self.asked = False
        self.value: bool | None = None

    def __call__(self) -> bool | None:
        if not self.asked:
            self.value, self.asked = self.holds(), True
        return self.value


def _row(file: CallFile, transfer: Transfer | None, verdict: Verdict, detail: str) -> AuditRow:
    fields = file.fields
    return AuditRow(fields.get("call_cid", ""), fields.get("kind", ""), fields.get("filename", ""),
                    transfer.storage if transfer else None, transfer.key if transfer else None, verdict,
                    scrub(detail))  # a transfer's error may quote a URL


def _expires_ms(file: CallFile, transfer: Transfer | None) -> int | None:
    if transfer is not None and transfer.expires_at is not None:
        return to_ms(transfer.expires_at)
    raw = file.fields.get("expires_at")
    return int(raw) if raw else None


def _span(ms: int) -> str:
    return format_span(timedelta(milliseconds=ms))


def _where(runtime: Runtime, transfer: Transfer) -> str:
    try:
        return f"{runtime.storage(transfer.storage).describe()}{transfer.key}"
    except Exception:  # noqa: BLE001 - only words for a message
        return f"{transfer.storage}:{transfer.key}"
