"""Erasure of a call, or of one session of it (`archiver erase`): every copy the archiver knows of.

Check first, delete after, so that a refusal deletes nothing:

1. **Check.** Every object the archiver wrote for the call (each transfer's key: `calls.ours`) and each
   session's manifest, in every storage, is listed with every version the store keeps and what protects
   each (`Storage.versions`). Any of these blocks the whole erasure: a legal hold on the call in the
   ledger (`archiver hold`); a version under a store hold or an unexpired retention period; a transfer
   still running (it could write after the erasure); an object that cannot be checked (nothing is deleted
   on a guess). Then nothing is deleted, each blocked object is named with why, and the report says so.
   A dry run stops here too: it says what would be deleted and what blocks it.
2. **Mark.** Each file is marked erased (``erased:<fid>``, `forget.mark_erased`) before any deletion:
   from then on intake refuses to record it again, whether a webhook is redelivered or a reconciliation
   still finds it at Stream.
3. **Delete.** Every version of every object (`Storage.erase`: by version id, delete markers too), then
   each file at Stream (DeleteRecording / DeleteTranscription; already gone counts as deleted).
4. **Forget.** Each file whose copies are all gone leaves the ledger with its transfers, index entries
   and notifications (`worker.compliance.forget`); a session whose files and manifests are all gone, its
   manifest record. A file whose erasure failed midway (a store refusing anyway, an outage) keeps its
   records, so that the erasure can be run again; a failed delete at Stream is reported and the marker
   keeps discovery from archiving the file again.

Every step is noted in the audit log (action ``erase``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from worker.auditlog import note
from worker.compliance import forget
from worker.compliance.calls import CallFileRecord, StorageOf, call_files, ours
from worker.compliance.holds import Hold, hold_of
from worker.errors import ArchiverError, StreamApiError, StreamRefused
from worker.files import artefact
from worker.ledger.calls import manifests_of
from worker.runtime import Runtime
from worker.storage.base import ObjectVersion

log = structlog.get_logger(__name__)


@dataclass
class Target:
    """One object to erase: a file's copy in one storage, or a session's manifest."""

    storage: str
    key: str
    what: str  # "file" | "manifest"
    file_id: str = ""
    transfer_id: str | None = None
    session_id: str = ""
    versions: list[ObjectVersion] = field(default_factory=list)
    blocked: str | None = None  # why it cannot be erased (then nothing is)
    reason: str | None = None  # legal_hold | retention | running | unchecked
    failed: str | None = None  # the deletion failed midway
    erased: list[ObjectVersion] = field(default_factory=list)


@dataclass
class StreamTarget:
    file_id: str
    kind: str
    session_id: str
    filename: str
    outcome: str = ""  # deleted | already gone | failed: …


@dataclass
class ErasureReport:
    call_cid: str
    session: str | None
    dry_run: bool
    hold: Hold | None = None
    targets: list[Target] = field(default_factory=list)
    stream: list[StreamTarget] = field(default_factory=list)
    files: int = 0  # files of the call (or session) the ledger holds
    forgotten: int = 0  # files removed from the ledger

    @property
    def blocked(self) -> list[Target]:
        return [t for t in self.targets if t.blocked]

    @property
    def failed(self) -> list[str]:
        """What failed while deleting (objects, files at Stream)."""
        found = [f"{t.storage}: {t.key}: {t.failed}" for t in self.targets if t.failed]
        return found + [f"Stream: {s.filename}: {s.outcome}" for s in self.stream if s.outcome.startswith("failed")]

    @property
    def refused(self) -> bool:
        """Something blocks the erasure (a hold on the call, a blocked object): nothing is deleted."""
        return self.hold is not None or bool(self.blocked)

    @property
    def ok(self) -> bool:
        return not self.refused and not self.failed


def _targets(runtime: Runtime, call_cid: str, files: list[CallFileRecord], sessions: set[str]) -> list[Target]:
    found = [Target(t.storage, key, "file", f.file_id, t.id, f.session_id)
             for f in files for t in f.transfers if ours(t)
             for key in (t.key, t.replaced_key) if key]  # replaced_key: a damaged copy retention kept
    for session in sorted(sessions):
        found += [Target(m.storage, m.key, "manifest", session_id=session)
                  for m in manifests_of(runtime.ledger, call_cid, session)]
    return found


def _check(storage_of: StorageOf, target: Target, hold: Hold | None, running: set[str]) -> None:
    """List the target's versions and say what blocks its erasure (see the module docstring)."""
    try:
        target.versions = storage_of(target.storage).versions(target.key)
    except (ArchiverError, KeyError, ValueError) as exc:
        target.blocked, target.reason = f"cannot check it: {exc}", "unchecked"
        return
    protected = [b for b in (v.blocker() for v in target.versions) if b is not None]
    if hold is not None:
        target.blocked, target.reason = (f"the call is on legal hold (since {hold.at} ms, by {hold.by or '?'}: "
                                         f"{hold.reason or 'no reason given'})"), "legal_hold"
    elif protected:
        target.reason, target.blocked = protected[0]
    elif target.transfer_id in running:
        target.blocked, target.reason = "its transfer is running: erase again once it finished", "running"


def plan_erasure(runtime: Runtime, call_cid: str, session: str | None, *, dry_run: bool) -> tuple[
        ErasureReport, list[CallFileRecord]]:
    """Step 1: what would be erased, and what blocks it."""
    ledger = runtime.ledger
    files = call_files(ledger, call_cid, session)
    sessions = {f.session_id for f in files if f.session_id} | ({session} if session else set())
    if session is None:
        sessions |= {str(s) for s in ledger.redis.smembers(ledger.keys.call_sessions(call_cid))}
    report = ErasureReport(call_cid, session, dry_run, hold_of(ledger, call_cid), files=len(files))
    report.targets = _targets(runtime, call_cid, files, sessions)
    running = {t.id for f in files for t in f.transfers if t.state == "transferring"}
    for target in report.targets:
        _check(runtime.storage, target, report.hold, running)
    for f in files:
        kind = artefact(f.fields.get("kind", ""))
        if kind.api_section is not None and not f.fields.get("deleted_from_stream_at"):
            report.stream.append(StreamTarget(f.file_id, kind.name, f.session_id, f.fields.get("filename", "")))
    return report, files


def _delete_objects(runtime: Runtime, report: ErasureReport, by: str) -> None:
    for target in report.targets:
        try:
            target.erased = runtime.storage(target.storage).erase(target.key)
        except (ArchiverError, KeyError, ValueError) as exc:
            target.failed = str(exc) or type(exc).__name__
            note(runtime.ledger, "erase", call_cid=report.call_cid, transfer_id=target.transfer_id,
                 storage=target.storage, key=target.key, reason=getattr(exc, "reason", None), by=by,
                 outcome=f"failed: {target.failed}")
            log.error("erase_failed", call_cid=report.call_cid, storage=target.storage, key=target.key,
                      error=target.failed)
            continue
        for version in target.erased or [ObjectVersion(target.key)]:
            note(runtime.ledger, "erase", call_cid=report.call_cid, transfer_id=target.transfer_id,
                 storage=target.storage, key=target.key, version_id=version.version, by=by,
                 outcome=f"erased {version.kind}" if target.erased else "nothing stored")


def _listed_session(runtime: Runtime, call_cid: str, item: StreamTarget) -> str | None:
    """The session of a file recorded without one (older records), from Stream's listing."""
    for listed in runtime.stream.list_files(call_cid, artefact(item.kind).name):
        if listed.get("filename") == item.filename and isinstance(listed.get("session_id"), str):
            return str(listed["session_id"])
    return None


def _delete_at_stream(runtime: Runtime, report: ErasureReport, by: str) -> None:
    for item in report.stream:
        try:
            session = item.session_id or _listed_session(runtime, report.call_cid, item)
            if session is None:
                item.outcome = "already gone (not listed by Stream)"
            else:
                runtime.stream.delete_file(report.call_cid, artefact(item.kind).name, session, item.filename)
                item.outcome = "deleted"
        except StreamRefused as exc:
            item.outcome = "already gone" if exc.gone else f"failed: {exc}"
        except StreamApiError as exc:
            item.outcome = f"failed: {exc}"
        note(runtime.ledger, "erase", call_cid=report.call_cid, key=item.filename, storage="stream", by=by,
             outcome=item.outcome)
        (log.error if item.outcome.startswith("failed") else log.info)(
            "erase_stream_file", call_cid=report.call_cid, filename=item.filename, outcome=item.outcome)


def _forget(runtime: Runtime, report: ErasureReport, files: list[CallFileRecord]) -> None:
    failed_files = {t.file_id for t in report.targets if t.failed and t.file_id}
    failed_sessions = {t.session_id for t in report.targets if t.failed}
    for f in files:
        if f.file_id not in failed_files:
            forget.forget_file(runtime.ledger, f.file_id, f.fields, f.transfers)
            report.forgotten += 1
    sessions = {t.session_id for t in report.targets if t.session_id} | {s.session_id for s in report.stream}
    for session in sorted(s for s in sessions - failed_sessions if s):
        forget.forget_session(runtime.ledger, report.call_cid, session)
    if report.session is None and not failed_files:
        forget.forget_call(runtime.ledger, report.call_cid)


def erase_call(runtime: Runtime, call_cid: str, session: str | None = None, *, dry_run: bool = False,
               by: str = "") -> ErasureReport:
    """Erase the call's (or `session`'s) copies everywhere, unless something blocks it (module docstring)."""
    report, files = plan_erasure(runtime, call_cid, session, dry_run=dry_run)
    if report.refused:
        if report.hold is not None:
            note(runtime.ledger, "erase", call_cid=call_cid, reason="legal_hold", by=by,
                 outcome=f"refused: the call is on legal hold ({report.hold.reason or 'no reason given'})")
        for target in report.blocked:
            note(runtime.ledger, "erase", call_cid=call_cid, transfer_id=target.transfer_id, storage=target.storage,
                 key=target.key, reason=target.reason, by=by, outcome=f"refused: {target.blocked}")
        log.error("erase_refused", call_cid=call_cid, session_id=session, blocked=len(report.blocked))
        return report
    if dry_run:
        return report
    note(runtime.ledger, "erase", call_cid=call_cid, by=by, reason=f"session {session}" if session else None,
         outcome=f"started: {len(report.targets)} object(s), {len(report.stream)} file(s) at Stream")
    for f in files:
        forget.mark_erased(runtime.ledger, f.file_id, f.fields, runtime.archive.retention, by=by)
    _delete_objects(runtime, report, by)
    _delete_at_stream(runtime, report, by)
    _forget(runtime, report, files)
    note(runtime.ledger, "erase", call_cid=call_cid, by=by, outcome="done" if report.ok else "incomplete")
    log.info("call_erased", call_cid=call_cid, session_id=session, objects=len(report.targets),
             forgotten=report.forgotten, failed=len(report.failed))
    return report
