"""`archiver hold` and `archiver erase`: legal holds on a call, and its erasure (`worker.compliance`).

``archiver hold --call CID [--reason TEXT]`` holds the call in the ledger and every archived object of it
at its store, where the store keeps holds; ``archiver hold --release --call CID`` releases them. Each
object gets a row: held at the store, ledger only (the storage keeps no holds), or failed and why.

``archiver erase --call CID [--session S] [--dry-run]`` deletes every copy of the call (or of one session):
every version of every archived object and manifest, the files at Stream, the ledger's records, index
entries and notifications, unless something blocks it; then nothing is deleted and each blocked object
is printed with why.

``--call`` takes the call's cid (type:id); its id alone when the ledger knows only one call of that id.

Exit codes: 0 done; 1 an object could not be held or released, or the erasure was refused (a hold, a
retention period, a running transfer) or failed midway; 2 a bad ``--call`` or configuration; 3 Redis
unreachable.
"""

from __future__ import annotations

import getpass
import socket
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from worker.edge.cli._boot import err, ledger_settings, open_ledger, out, stream_settings

if TYPE_CHECKING:
    from worker.compliance.erase import ErasureReport
    from worker.ledger.store import Ledger

CALL = typer.Option("--call", help="The call: its cid (type:id), or its id when only one call has it.")


def _operator() -> str:
    """Who runs the command, for the hold's record and the audit log: user@host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name in the environment nor the password database
        user = "?"
    return f"{user}@{socket.gethostname()}"


def _resolve(ledger: Ledger, query: str) -> str:
    """The call's cid, or stop (exit 2) saying why `query` names none."""
    from worker.compliance.calls import UnknownCall, resolve_call  # noqa: PLC0415

    try:
        return resolve_call(ledger, query)
    except UnknownCall as exc:
        err.print(f"--call: {exc}", highlight=False)
        raise typer.Exit(2) from None


def hold_command(
    call: Annotated[str, CALL],
    reason: Annotated[str, typer.Option("--reason", help="Why the call is held (kept with the hold).")] = "",
    release: Annotated[bool, typer.Option("--release", help="Release the hold instead.")] = False,
) -> None:
    """Place (or --release) a legal hold on a call: in the ledger, and on every archived object where the
    store keeps holds. A held call is never pruned, deleted from Stream nor erased."""
    from worker.compliance.holds import place_hold, release_hold  # noqa: PLC0415
    from worker.storage import Storage  # noqa: PLC0415
    from worker.storage.registry import build_storage  # noqa: PLC0415

    settings = ledger_settings()
    ledger, storages = open_ledger(settings), dict[str, Storage]()
    call_cid = _resolve(ledger, call)

    def storage_of(name: str) -> Storage:  # KeyError for a storage no longer configured: that object fails
        if name not in storages:
            storages[name] = build_storage(settings.archive.storage(name), settings.archive.transfer)
        return storages[name]

    try:
        if release:
            report = release_hold(ledger, storage_of, call_cid, by=_operator())
        else:
            report = place_hold(ledger, storage_of, call_cid, reason=reason, by=_operator())
    finally:
        for storage in storages.values():
            storage.close()
    table = Table("transfer", "storage", "key", "outcome", "detail")
    for o in report.objects:
        table.add_row(o.transfer_id, o.storage, o.key, o.outcome.replace("_", " "), o.detail)
    out.print(table)
    state = "held" if report.in_ledger else "not held"
    out.print(f"{call_cid}: {state} in the ledger; {len(report.objects)} object(s), {len(report.failed)} failed",
              highlight=False)
    if report.failed:
        raise typer.Exit(1)


def erase_command(
    call: Annotated[str, CALL],
    session: Annotated[str | None, typer.Option("--session", help="Only this session of the call.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would be deleted, and what blocks it.")
                       ] = False,
) -> None:
    """Erase a call (or one session): every version of its archived copies and manifests in every storage,
    its files at Stream, and the ledger's records of it; nothing at all when a hold or a retention forbids it."""
    from worker.compliance.erase import erase_call  # noqa: PLC0415
    from worker.runtime import Runtime  # noqa: PLC0415

    settings = stream_settings()
    call_cid = _resolve(open_ledger(settings), call)
    runtime = Runtime.from_settings(settings)
    try:
        report = erase_call(runtime, call_cid, session, dry_run=dry_run, by=_operator())
    finally:
        runtime.close()
    table = Table("storage", "key", "versions", "outcome")
    for t in report.targets:
        versions = ", ".join(str(v.version or v.kind) for v in (t.erased or t.versions)) or "none stored"
        outcome = (f"blocked ({t.reason}): {t.blocked}" if t.blocked else f"failed: {t.failed}" if t.failed
                   else "would be erased" if dry_run or report.refused else "erased")
        table.add_row(t.storage, t.key, versions, outcome)
    for s in report.stream:
        table.add_row("stream", s.filename, "", s.outcome or ("would be deleted" if not report.refused else "kept"))
    out.print(table)
    _say(report, call_cid, session)
    if not report.ok:
        raise typer.Exit(1)


def _say(report: ErasureReport, call_cid: str, session: str | None) -> None:
    what = f"{call_cid} session {session}" if session else call_cid
    if report.hold is not None:
        out.print(f"{what}: the call is on legal hold ({report.hold.reason or 'no reason given'}, by "
                  f"{report.hold.by or '?'}): nothing erased. Release it first: archiver hold --release --call "
                  f"{call_cid}", highlight=False)
    elif report.refused:
        out.print(f"{what}: {len(report.blocked)} object(s) cannot be erased (above): nothing erased", highlight=False)
    elif report.dry_run:
        out.print(f"{what}: {len(report.targets)} object(s) and {len(report.stream)} file(s) at Stream would be "
                  "erased (dry run: nothing deleted)", highlight=False)
    else:
        out.print(f"{what}: erased {sum(1 for t in report.targets if not t.failed)} object(s), forgot "
                  f"{report.forgotten} of {report.files} file(s); {len(report.failed)} failure(s)", highlight=False)
        for failure in report.failed:
            err.print(f"failed: {failure}", highlight=False)
