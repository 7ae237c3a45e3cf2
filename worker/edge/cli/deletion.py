"""`archiver delete-archived`: delete from Stream the files every destination has archived and
verified (what the scheduler does by itself when `delete_from_stream` is on).

Exit codes: 0 done (or a dry run); 1 a deletion failed, or an archived object no longer matched (its
file is queued again and kept at Stream); 2 bad configuration; 3 Redis unreachable.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from worker.edge.cli._boot import open_ledger, out, stream_settings


def delete_archived_command(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would be deleted.")] = False,
) -> None:
    """Delete from Stream every file that every destination has archived and verified."""
    from worker.discovery.deletion import delete_archived  # noqa: PLC0415
    from worker.runtime import Runtime  # noqa: PLC0415

    settings = stream_settings()
    open_ledger(settings)
    runtime = Runtime.from_settings(settings, actor="cli")
    try:
        summary = delete_archived(runtime, dry_run=dry_run)
    finally:
        runtime.close()
    table = Table("call_cid", "kind", "filename", "archived at")
    for item in summary.candidates:
        table.add_row(item.call_cid, item.kind, item.filename, ", ".join(item.destinations))
    out.print(table)
    if summary.held:
        out.print(f"kept {summary.held} file(s) of calls on legal hold at Stream (archiver hold)")
    if dry_run:
        out.print(f"{len(summary.candidates)} file(s) would be deleted from Stream (dry run: nothing deleted)")
        return
    out.print(f"deleted {summary.deleted}, already gone {summary.already_gone}, failed {summary.failed}, "
              f"skipped {summary.skipped} (an archived object no longer matched: queued again)")
    if summary.failed or summary.skipped:
        raise typer.Exit(1)
