"""The `archiver` command: run the service's parts, and look at the ledger.

This is the edge: it wires the domain (`worker`) to Celery (`tasks`), so it alone may import both
(lazily, so `archiver transfers …` never builds a Celery app). This module only assembles the
commands, which live one group to a module:

    service      web, worker, scheduler, sqs, serve (the service's parts)
    deletion     delete-archived
    storages     doctor, storage list|check
    discovery    backfill, reconcile
    audit        audit
    auditlog     audit-log verify|export (the tamper-evident audit log)
    trial        try
    transfers    transfers list|retry|export|prune|show
    link         link (a short-lived download URL of an archived file)
    find         find (archived files, from the index)
    notifications  notifications list|retry
    compliance   hold (and hold --release), erase (legal holds and erasure of a call)

and `_boot` holds what they all start with (settings, the ledger, the consoles, exit codes).
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperOption

from worker.edge.cli import service
from worker.edge.cli.audit import audit_command
from worker.edge.cli.auditlog import auditlog_app
from worker.edge.cli.compliance import erase_command, hold_command
from worker.edge.cli.deletion import delete_archived_command
from worker.edge.cli.discovery import backfill_command, reconcile_command
from worker.edge.cli.find import find_command
from worker.edge.cli.link import link_command
from worker.edge.cli.notifications import notifications_app
from worker.edge.cli.storages import doctor, storage_app
from worker.edge.cli.transfers import transfers_app
from worker.edge.cli.trial import try_command

app = typer.Typer(help="Archive Stream Video recordings and transcriptions into your own storage.",
                  no_args_is_help=True, add_completion=False)
app.add_typer(transfers_app, name="transfers")
app.add_typer(storage_app, name="storage")
app.add_typer(notifications_app, name="notifications")
app.add_typer(auditlog_app, name="audit-log")
app.command()(service.web)
app.command()(service.worker)
app.command()(service.scheduler)
app.command()(service.sqs)
app.command("delete-archived")(delete_archived_command)
app.command()(service.serve)
app.command()(doctor)
app.command("backfill")(backfill_command)
app.command("reconcile")(reconcile_command)
app.command("audit")(audit_command)
app.command("try")(try_command)
app.command("link")(link_command)
app.command("find")(find_command)
app.command("hold")(hold_command)
app.command("erase")(erase_command)

# Typer's rich help shows a flag's type as "<bool>" (typer 0.29), though a flag takes no value: show
# none. Older typer (the lowest allowed) has no such hook and shows no type for flags anyway.
_option_type = getattr(TyperOption, "display_type_rich", None)


def _flag_without_type(self: TyperOption, ctx: Any) -> str | None:
    return None if self.is_flag else _option_type(self, ctx)  # type: ignore[misc] # only installed when set


if _option_type is not None:
    setattr(TyperOption, "display_type_rich", _flag_without_type)  # noqa: B010 - a method, patched only where it exists


def main() -> None:
    app()


if __name__ == "__main__":
    main()
