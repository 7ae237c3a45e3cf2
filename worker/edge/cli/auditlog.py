"""`archiver audit-log verify|export`: check the tamper-evident audit log (`worker.auditlog`), or
export it now (what the scheduler does every `audit_log_every`).

Exit codes: 0 the chain is intact (verify), or the export is done; 1 the chain is broken (the first
broken or missing entry is named), or an export could not be written; 2 bad arguments or
configuration; 3 Redis unreachable; 4 a storage failed (or an earlier export's storage is no longer
configured), so the check could not complete.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from config import ConfigError, LedgerSettings
from worker.clock import from_ms, rfc3339
from worker.edge.cli._boot import err, ledger_settings, open_ledger, out
from worker.errors import ArchiverError, AuditLogError
from worker.storage import Storage

INCOMPLETE = 4

auditlog_app = typer.Typer(help="The tamper-evident audit log: verify it, or export it now.", no_args_is_help=True)


def _storage(settings: LedgerSettings) -> Storage:
    """The storage the audit log is exported into; exit 2 when it cannot be built."""
    from worker.storage.registry import build_storage  # noqa: PLC0415

    archive = settings.archive
    name = archive.audit_log_storage_name()
    try:
        return build_storage(archive.storage(name), archive.transfer)
    except (ConfigError, ValueError) as exc:
        err.print(f"[bold red]configuration error:[/] audit_log_storage {name!r} cannot be used: {exc}",
                  highlight=False)
        raise typer.Exit(2) from None


class _Storages:
    """The storages earlier exports went to (audit_log_storage may have changed since), by name, built
    on first use; AuditLogError for one the configuration no longer has."""

    def __init__(self, settings: LedgerSettings, current: Storage) -> None:
        self.settings, self.built = settings, {current.name: current}

    def __call__(self, name: str) -> Storage:
        from worker.storage.registry import build_storage  # noqa: PLC0415

        if name not in self.built:
            archive = self.settings.archive
            try:
                self.built[name] = build_storage(archive.storage(name), archive.transfer)
            except KeyError:
                raise AuditLogError(f"exports were written to the storage {name!r}, which the configuration no "
                                    "longer has: add it back (it need not be routed to) to read them") from None
            except (ConfigError, ValueError) as exc:
                raise AuditLogError(f"exports were written to the storage {name!r}, which cannot be used: "
                                    f"{exc}") from None
        return self.built[name]

    def close(self) -> None:
        for storage in self.built.values():
            storage.close()


@auditlog_app.command("verify")
def verify_command(
    since: Annotated[str | None, typer.Option(help="Start at the first export made at or after this moment (its "
                                                   "first entry's prev is taken on trust): 30d, 36h (that long "
                                                   "ago), YYYY-MM-DD or RFC 3339. Default: the whole chain from "
                                                   "seq 1.")] = None,
) -> None:
    """Read every exported object back and check the chain: each entry's hash, each prev link, no seq
    missing, across the objects and on into the entries still in Redis. Exit 1 naming the first broken
    or missing entry (seq, object key, line) when the chain is broken."""
    from worker.auditlog.verify import verify_log  # noqa: PLC0415
    from worker.edge.cli.discovery import parse_moment  # noqa: PLC0415

    settings = ledger_settings()
    try:
        start = None if since is None else parse_moment(since, datetime.now(UTC))
    except ValueError as exc:
        err.print(f"[bold red]bad arguments:[/] --since: {exc}", highlight=False)
        raise typer.Exit(2) from None
    ledger, storage = open_ledger(settings), _storage(settings)
    storages = _Storages(settings, storage)
    try:
        report = verify_log(ledger, storages, since=start)
    except ArchiverError as exc:
        err.print(f"[bold red]cannot verify[/]: {exc}", highlight=False)
        raise typer.Exit(INCOMPLETE) from None
    finally:
        storages.close()
    span = (f", {rfc3339(from_ms(report.first_at))} to {rfc3339(from_ms(report.last_at))}"
            if report.first_at is not None and report.last_at is not None else "")
    seqs = f" (seq {report.first_seq}-{report.last_seq}{span})" if report.first_seq is not None else ""
    out.print(f"audit log in {storage.describe()}audit-log/: {report.objects} object(s) read, {report.entries} "
              f"entries checked{seqs}, of which {report.in_redis} in Redis not exported yet; {report.pending} "
              "noted and not chained yet (not checked)", highlight=False, markup=False)
    if report.anchor:
        out.print(f"anchor: {report.anchor}", highlight=False, markup=False)
    if report.broken is not None:
        out.print(f"chain BROKEN at {report.broken.describe()}", highlight=False, markup=False)
        raise typer.Exit(1)
    out.print("chain intact", highlight=False, markup=False)


@auditlog_app.command("export")
def export_command() -> None:
    """Chain what is queued and export every entry not exported yet, now, as a new JSONL object under
    audit-log/ in audit_log_storage (nothing new: nothing written)."""
    from worker.auditlog.export import export_log  # noqa: PLC0415

    settings = ledger_settings()
    ledger, storage = open_ledger(settings), _storage(settings)
    try:
        exports = export_log(ledger, storage, wait=60)
    except AuditLogError as exc:
        err.print(f"[bold red]export failed[/]: {exc}", highlight=False)
        raise typer.Exit(1) from None
    except ArchiverError as exc:
        err.print(f"[bold red]export failed, the storage refused or failed[/]: {exc}", highlight=False)
        raise typer.Exit(INCOMPLETE) from None
    finally:
        storage.close()
    for export in exports:
        out.print(f"exported seq {export.first}-{export.last} ({export.entries} entries, {export.bytes} bytes, "
                  f"sha256 {export.sha256}) to {storage.describe()}{export.key}", highlight=False, markup=False)
    if not exports:
        out.print("nothing new to export", highlight=False, markup=False)
