"""`archiver audit`: prove that every file Stream had is in the storages, intact (`worker.audit`).

The report goes to stdout (or `--output`, written whole or not at all): a table (the counts by
verdict, then every problem), JSON lines, CSV, or one HTML page. A progress line goes to stderr.
The transfers the audit queues again, and the files it records, are handed to Celery.

Exit codes: 0 no problem; 1 a problem found (missing, mismatch, lost, unknown_to_ledger, at_risk,
unchecked); 2 bad arguments or configuration; 3 Redis unreachable; 4 Stream's API failed, so the
audit could not complete (the checkpoint keeps what was done: the same command resumes it).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from worker.audit.checkpoint import drop, load, saved_query
from worker.audit.formats import FORMATS, Format, write_csv, write_html, write_json
from worker.audit.model import VERDICTS, AuditCounts, AuditQuery
from worker.audit.run import AuditResult, EventKind, audit
from worker.edge.cli._boot import celery_enqueue, err, open_ledger, stream_settings
from worker.edge.cli.discovery import checkpoint_name, parse_moment
from worker.errors import StreamApiError
from worker.runtime import Runtime

INCOMPLETE = 4


def audit_command(
    since: Annotated[str, typer.Option(help="Files of the calls that ended since, and files the archiver recorded "
                                            "since: 14d, 36h (that long ago), YYYY-MM-DD or RFC 3339.")] = "14d",
    until: Annotated[str | None, typer.Option(help="…and until (a date means the end of that day); default: "
                                                   "now.")] = None,
    call: Annotated[list[str] | None, typer.Option("--call", help="Only this call, TYPE:ID, whatever its times "
                                                                  "(repeatable).")] = None,
    deep: Annotated[bool, typer.Option("--deep", help="Read every object back and compare its SHA-256 with the "
                                                      "ledger's (default: presence and size).")] = False,
    fmt: Annotated[str, typer.Option("--format", help="table (counts, then every problem), json (one object per "
                                                      "file and destination, then the summary), csv or html "
                                                      "(one self-contained page).")] = "table",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the report here (default: "
                                                                       "stdout).", dir_okay=False)] = None,
    restart: Annotated[bool, typer.Option("--restart", help="Ignore the checkpoint of an earlier, unfinished "
                                                           "audit with these arguments.")] = False,
) -> None:
    """Compare what Stream lists, what the ledger says and what each storage holds, for every file in
    scope: one verdict per file and destination. Missing or changed objects whose file Stream still
    holds are queued again at once; files the ledger never saw are recorded and queued. Exit 1 when
    any problem is found. Resumable: run the same command again after an interruption."""
    settings = stream_settings()
    query = _query(since, until, call or [], deep)
    if fmt not in FORMATS:
        err.print(f"[bold red]bad arguments:[/] --format takes {', '.join(FORMATS)}, got {fmt!r}", highlight=False)
        raise typer.Exit(2)
    open_ledger(settings).redis.close()  # exits 3 when Redis is unreachable
    runtime = Runtime.from_settings(settings, actor="cli")
    try:
        name = checkpoint_name("audit", since, until, sorted(query.calls), deep)
        if restart:
            drop(runtime.ledger, name)
        query = saved_query(runtime.ledger, name) or query
        result = _audit_with_progress(runtime, query, name)
        _write(result, fmt, output)
        result.forget()
    except StreamApiError as exc:
        err.print(f"[bold red]Stream's API failed[/]: {exc}", highlight=False)
        err.print("The audit could not complete: the checkpoint keeps what was done; run the same command again "
                  "to go on from there.")
        raise typer.Exit(INCOMPLETE) from None
    finally:
        runtime.close()
    counts = result.summary.counts
    err.print(f"audit: {counts.problems} problem(s) in {sum(counts.verdicts.values())} file(s) × destination(s); "
              f"{counts.requeued} queued again, {counts.recorded} recorded now", highlight=False)
    if counts.problems:
        raise typer.Exit(1)


def _query(since: str, until: str | None, calls: Sequence[str], deep: bool) -> AuditQuery:
    """The query the arguments ask for; exit 2 with the reason when they are not valid."""
    now = datetime.now(UTC)
    try:
        start = parse_moment(since, now)
        if start > now:
            raise ValueError(f"--since {since} is in the future")
        end = None if until is None else parse_moment(until, now, end_of_day=True)
        return AuditQuery.build(start, end, calls, deep=deep)
    except ValueError as exc:
        err.print(f"[bold red]bad arguments:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


def _audit_with_progress(runtime: Runtime, query: AuditQuery, name: str) -> AuditResult:
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err) as bar:
        task = bar.add_task("listing calls", total=None)

        def show(what: EventKind, c: AuditCounts) -> None:
            if what == "resumed":
                saved = load(runtime.ledger, name) or {}
                err.print(f"resuming the audit {name} ({c.files} file(s) done, phase {saved.get('phase')})")
            bar.update(task, description=f"calls {c.calls_listed} · files {c.files} · objects {c.objects} · "
                                         f"problems {c.problems}")

        return audit(runtime, query, lambda ids: celery_enqueue()(ids), name=name, progress=show)


def _write(result: AuditResult, fmt: Format, output: Path | None) -> None:
    """The report in `fmt`, to stdout or whole into `output` (exit 1 when it cannot be written)."""
    if output is None:
        _render(result, fmt, sys.stdout)
        return
    partial = output.with_name(f".{output.name}.partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as stream:
            _render(result, fmt, stream)
        partial.replace(output)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        err.print(f"cannot write {output}: {exc.strerror}", highlight=False)
        raise typer.Exit(1) from None
    err.print(f"audit report written to {output}", highlight=False)


def _render(result: AuditResult, fmt: Format, stream: TextIO) -> None:
    if fmt == "json":
        write_json(result.rows(), result.summary, stream)
    elif fmt == "csv":
        write_csv(result.rows(), stream)
    elif fmt == "html":
        write_html(result.rows(), result.problems(), result.summary, stream)
    else:
        _table(result, Console(file=stream, soft_wrap=True, width=None if stream.isatty() else 10_000))


def _table(result: AuditResult, console: Console) -> None:
    """The counts by verdict first, then every problem."""
    summary, counts = result.summary, result.summary.counts
    console.print(f"audit of {summary.query.describe()}", highlight=False, markup=False)
    table = Table("verdict", "files × destinations", title="summary", title_justify="left")
    for verdict in VERDICTS:
        table.add_row(verdict, str(counts.verdicts.get(verdict, 0)))
    console.print(table)
    console.print(f"calls listed {counts.calls_listed} · files {counts.files} · objects checked {counts.objects} · "
                  f"queued again {counts.requeued} · recorded now {counts.recorded}", highlight=False, markup=False)
    problems = Table("call_cid", "kind", "filename", "storage", "key", "verdict", "detail",
                     title=f"problems ({counts.problems})", title_justify="left")
    for row in result.problems():  # Text: a name or an error is never read as rich markup
        problems.add_row(*(Text(cell) for cell in (row.call_cid, row.kind, row.filename, row.storage or "-",
                                                   row.key or "-", row.verdict, row.detail)))
    console.print(problems if counts.problems else "no problem found", highlight=False)
