"""`archiver storage list|check` (the configured storages, and whether one works end to end) and
`archiver doctor` (Stream's credentials, Redis and every storage, at once).

Exit codes: 1 a check failed; 2 no such storage, or a bad configuration.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from config import ConfigError
from worker.edge.cli._boot import err, ledger_settings, out, stream_settings
from worker.errors import ArchiverError

storage_app = typer.Typer(help="The configured storages.", no_args_is_help=True)


@storage_app.command("list")
def list_storages(as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
                  ) -> None:
    """Names, types, buckets, prefixes, write-once settings, encryption keys, and which call types route
    where (secrets masked)."""
    from worker.storage.listing import describe_storages  # noqa: PLC0415

    rows = describe_storages(ledger_settings().archive)
    if as_json:
        for row in rows:
            sys.stdout.write(json.dumps(row) + "\n")
        return
    table = Table("name", "type", "bucket", "path", "endpoint", "credentials", "create_only", "retention",
                  "encryption", "routes")
    for row in rows:
        table.add_row(row["name"], row["storage_type"], row["bucket"], row["path"], row["endpoint"] or "",
                      row["credentials"], row["create_only"], row["retention"] or "-", row["encryption"] or "-",
                      ", ".join(row["routes"]))
    out.print(table)


@storage_app.command("check")
def check_storage_command(name: Annotated[str, typer.Argument(help="A storage name from the configuration.")],
                          ) -> None:
    """Write, read back, verify and remove probe objects (like Stream's check, and more); with retention or
    holds set, prove them on the probe note, which then stays until its retention ends."""
    from worker.storage.probe import check_storage  # noqa: PLC0415
    from worker.storage.registry import build_storage  # noqa: PLC0415

    archive = ledger_settings().archive
    if name not in {s.name for s in archive.effective_storages()}:
        err.print(f"no storage named {name!r} in the configuration")
        raise typer.Exit(2)
    try:
        storage = build_storage(archive.storage(name), archive.transfer)
    except (ConfigError, ValueError) as exc:
        err.print(f"[bold red]{name}: cannot be used[/]: {exc}", highlight=False)
        raise typer.Exit(1) from None
    try:
        report = check_storage(storage, archive.transfer, protect=True)
    except ArchiverError as exc:
        err.print(f"[bold red]{name}: cannot be used[/]: {exc}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        storage.close()
    table = Table("step", "ok", "seconds", "detail")
    for step in report.steps:
        table.add_row(step.name, "yes" if step.ok else "[red]NO[/]", f"{step.seconds:.2f}", step.detail)
    out.print(f"{report.storage}: {report.described}")
    out.print(table)
    for key, until in report.kept:
        out.print(f"[yellow]kept[/]: {key} stays until {until:%Y-%m-%d %H:%M} UTC: its retention forbids deleting "
                  "it before then (the store refused); delete it afterwards, or let a lifecycle rule do it",
                  highlight=False)
    if not report.ok:
        err.print(f"[bold red]check failed[/] ({report.reason}): {report.message}", highlight=False)
        raise typer.Exit(1)
    out.print("[green]ok[/]")


def doctor() -> None:
    """Check Stream's credentials, Redis (reachable, persistence, eviction) and every storage."""
    from worker.monitoring.doctor import diagnose  # noqa: PLC0415
    from worker.runtime import Runtime  # noqa: PLC0415

    settings = stream_settings()
    runtime = Runtime.from_settings(settings, actor="cli")
    try:
        findings = diagnose(runtime)
    finally:
        runtime.close()
    table = Table("", "what", "finding")
    for finding in findings:
        table.add_row("[green]ok[/]" if finding.ok else "[red]PROBLEM[/]", finding.area, finding.detail)
    out.print(table)
    problems = [f for f in findings if not f.ok]
    if problems:
        err.print(f"[bold red]{len(problems)} problem(s)[/]", highlight=False)
        raise typer.Exit(1)
