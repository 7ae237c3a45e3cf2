"""`archiver transfers …`: look at the transfer ledger, queue failed transfers again, export it for
audits, and forget transfers archived long ago.

Exit codes: 1 something asked for was not done (an unknown id, a transfer not failed, an export not
written); 2 bad arguments or configuration; 3 Redis unreachable.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from worker.clock import rfc3339
from worker.edge.cli._boot import celery_enqueue, err, ledger_settings, open_ledger, out, stream_settings
from worker.ledger.models import LISTED_STATES
from worker.ledger.store import Ledger

transfers_app = typer.Typer(help="Look at the transfer ledger.", no_args_is_help=True)


@transfers_app.command("list")
def list_transfers(
    state: Annotated[str | None, typer.Option(help=f"Only this state: {', '.join(LISTED_STATES)}.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    call: Annotated[str | None, typer.Option("--call", help="Only this call's: its cid (type:id) or its id.")] = None,
) -> None:
    """List transfers, oldest first, and files waiting for their routes (state routing: no storage yet)."""
    from worker.ledger.calls import call_rows  # noqa: PLC0415
    from worker.ledger.unrouted import listed_rows  # noqa: PLC0415

    if state is not None and state not in LISTED_STATES:
        err.print(f"unknown state {state!r}; one of: {', '.join(LISTED_STATES)}")
        raise typer.Exit(2)
    ledger = open_ledger(ledger_settings())
    rows = listed_rows(ledger, state) if call is None else iter(call_rows(ledger, call, state))
    if as_json:
        for row in rows:
            sys.stdout.write(json.dumps(row) + "\n")
        return
    table = Table("id", "state", "call_cid", "kind", "filename", "storage", "bytes", "attempts", "expires_at",
                  "error")
    for r in rows:
        table.add_row(r["id"], r["state"], r["call_cid"], r["kind"], r["filename"], r["storage"] or "",
                      "" if r["bytes"] is None else str(r["bytes"]), str(r["attempts"]), r["expires_at"] or "",
                      (r["error"] or "")[:80])
    out.print(table)


RETRYABLE = ("failed", "lost")


@transfers_app.command("retry")
def retry_transfers(
    transfer_ids: Annotated[list[str] | None, typer.Argument(help="Transfer ids (t_…).")] = None,
    state: Annotated[str | None, typer.Option(help="Every transfer in this state: failed or lost.")] = None,
) -> None:
    """Queue failed (or lost) transfers again, e.g. after fixing a storage's credentials."""
    if state is not None and state not in RETRYABLE:
        err.print(f"cannot retry by state {state!r}: only failed or lost transfers are retried")
        raise typer.Exit(2)
    if bool(transfer_ids) == (state is not None):
        err.print("give transfer ids, or --state failed (or lost), not both")
        raise typer.Exit(2)
    ledger = open_ledger(stream_settings())  # it hands them to the workers: the Celery app needs the full settings
    ids = list(dict.fromkeys(transfer_ids or ledger.ids(state)))
    if not ids:
        err.print(f"no {state} transfers: nothing to retry")
        raise typer.Exit(1)
    retried = [tid for tid in ids if ledger.retry(tid)]
    for tid in sorted(set(ids) - set(retried)):
        transfer = ledger.get(tid)
        state_of = transfer.state if transfer is not None else _routing_or_none(ledger, tid)
        err.print(f"{tid}: no such transfer" if state_of is None
                  else f"{tid}: {state_of}, not failed or lost; left as it is")
    for tid in retried:
        out.print(f"queued {tid}", highlight=False)
    if retried:
        _hand_over(ledger.soonest_to_expire(retried))
    out.print(f"queued {len(retried)} transfer(s) again")
    if len(retried) != len(ids):
        raise typer.Exit(1)


def _routing_or_none(ledger: Ledger, file_id: str) -> str | None:
    """``routing`` for a file waiting for its routes (it is retried by itself), else None."""
    from worker.ledger.unrouted import waiting_files  # noqa: PLC0415

    return "routing (waiting for its routes; tried again by itself)" if waiting_files(ledger, [file_id]) else None


def _hand_over(transfer_ids: list[str]) -> None:
    """Queue `transfer_ids` (already due in the ledger) for the workers; when the broker fails, say
    that the scheduler's sweep will queue them."""
    try:
        celery_enqueue()(transfer_ids)
    except Exception as exc:  # noqa: BLE001 - the ledger holds them as due: the sweep queues them
        err.print(f"could not hand them to the workers now ({type(exc).__name__}: {exc}); they are due in "
                  "the ledger, and `archiver scheduler` queues them at its next sweep", highlight=False)


@transfers_app.command("export")
def export_transfers(
    fmt: Annotated[str, typer.Option("--format", help="csv (a header row) or json (one array).")] = "csv",
    state: Annotated[str | None, typer.Option(help=f"Only this state: {', '.join(LISTED_STATES)}.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).",
                                                dir_okay=False)] = None,
) -> None:
    """The ledger for audits: one row per transfer (and per file waiting for its routes) with its
    file's facts (never the signed URL)."""
    from worker.ledger.export import FORMATS, write_export  # noqa: PLC0415

    if fmt not in FORMATS:
        err.print(f"unknown format {fmt!r}; one of: {', '.join(FORMATS)}")
        raise typer.Exit(2)
    if state is not None and state not in LISTED_STATES:
        err.print(f"unknown state {state!r}; one of: {', '.join(LISTED_STATES)}")
        raise typer.Exit(2)
    ledger = open_ledger(ledger_settings())
    if output is None:
        count = write_export(ledger, sys.stdout, "json" if fmt == "json" else "csv", state)
        err.print(f"exported {count} transfer(s)")
        return
    partial = output.with_name(f".{output.name}.partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as stream:
            count = write_export(ledger, stream, "json" if fmt == "json" else "csv", state)
        partial.replace(output)  # a complete export, or none
    except OSError as exc:
        partial.unlink(missing_ok=True)
        err.print(f"cannot write {output}: {exc.strerror}")
        raise typer.Exit(1) from None
    err.print(f"exported {count} transfer(s) to {output}", highlight=False)


@transfers_app.command("prune")
def prune_transfers(
    older_than: Annotated[str, typer.Option("--older-than", help="Archived longer ago than this (e.g. 90d).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would be pruned.")] = False,
) -> None:
    """Forget archived transfers (and their files' records) archived long ago. Only archived ones:
    queued, transferring, failed, lost and skipped transfers are never touched."""
    from config.types import parse_duration  # noqa: PLC0415
    from worker.clock import from_ms  # noqa: PLC0415
    from worker.discovery.deletion import object_problem  # noqa: PLC0415
    from worker.ledger.prune import prune_archived  # noqa: PLC0415
    from worker.storage import Storage  # noqa: PLC0415
    from worker.storage.registry import build_storage  # noqa: PLC0415

    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        err.print(f"--older-than: {exc}")
        raise typer.Exit(2) from None
    if age.total_seconds() <= 0:
        err.print("--older-than must be a positive duration, such as 90d")
        raise typer.Exit(2)
    settings = ledger_settings()
    ledger, storages = open_ledger(settings), dict[str, Storage]()

    def storage_of(name: str) -> Storage:  # KeyError for a storage no longer configured: kept, unverified
        if name not in storages:
            storages[name] = build_storage(settings.archive.storage(name), settings.archive.transfer)
        return storages[name]

    try:  # an entry whose object no longer matches is kept: it is the record of what went wrong
        summary = prune_archived(ledger, age, dry_run=dry_run,
                                 check=lambda t: found[0] if (found := object_problem(storage_of, t)) else None)
    finally:
        for storage in storages.values():
            storage.close()
    verb = "would prune" if dry_run else "pruned"
    out.print(f"{verb} {summary.transfers} archived transfer(s) and {summary.files} file record(s) archived "
              f"before {rfc3339(from_ms(summary.cutoff_ms))}", highlight=False)
    if summary.outcomes["object_changed"]:
        out.print(f"kept {summary.outcomes['object_changed']} archived transfer(s) whose object no longer "
                  "matches what was archived (see the prune_skipped log lines)", highlight=False)
    if summary.held:
        out.print(f"kept {summary.held} archived transfer(s) of calls on legal hold (archiver hold)", highlight=False)
    if summary.kept_at_stream:
        out.print(f"kept {summary.kept_at_stream} archived transfer(s) whose files Stream still holds "
                  "(they would be recorded and uploaded again)", highlight=False)
    if dry_run:
        out.print("dry run: nothing deleted")


@transfers_app.command("show")
def show_transfer(transfer_id: Annotated[str, typer.Argument(
        help="A transfer id (t_…), or the id of a file waiting for its routes.")]) -> None:
    """Show one transfer (or a file waiting for its routes: state routing) as JSON."""
    from worker.ledger.unrouted import waiting_files  # noqa: PLC0415

    ledger = open_ledger(ledger_settings())
    transfer = ledger.get(transfer_id)
    waiting = [] if transfer is not None else waiting_files(ledger, [transfer_id])
    if transfer is None and not waiting:
        err.print(f"no transfer {transfer_id!r}")
        raise typer.Exit(1)
    row = transfer.to_json() if transfer is not None else waiting[0].to_json()
    sys.stdout.write(json.dumps(row, indent=2) + "\n")
