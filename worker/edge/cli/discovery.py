"""`archiver backfill` and `archiver reconcile`: Typer command functions that `worker/edge/cli/app.py` registers.

Both find the files Stream still holds that the ledger lacks (`worker.discovery.run`), record them,
hand the new transfers to Celery soonest-to-expire first (Celery is imported only when there is
something to hand over) and print a summary table.

Exit codes: 0 done (calls whose listing failed are listed, and the next reconciliation lists them
again); 1 Stream's API failed so that the run could not go on (its code and message are printed; a
backfill or a full reconciliation keeps its checkpoint, so the same command resumes it); 2 bad
arguments or configuration; 3 Redis unreachable.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from config import Settings
from config.types import parse_duration
from worker.clock import rfc3339
from worker.discovery.model import format_span
from worker.discovery.reconcile import reconcile
from worker.discovery.run import (
    DiscoveryCounts,
    DiscoveryEvent,
    DiscoveryQuery,
    DiscoverySummary,
    ReconcileSummary,
    discover,
    drop_checkpoint,
    saved_query,
)
from worker.edge.cli._boot import celery_enqueue, open_ledger, stream_settings
from worker.errors import StreamApiError
from worker.files import LISTED_KINDS, Kind
from worker.runtime import Runtime

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
AT_RISK_SHOWN = 50
FAILED_SHOWN = 20


def parse_moment(text: str, now: datetime, *, end_of_day: bool = False) -> datetime:
    """`14d` / `36h` (that long before `now`), `YYYY-MM-DD` (midnight UTC; with `end_of_day` the
    midnight after), or RFC 3339 (UTC when it has no offset). Raises ValueError."""
    text = text.strip()
    if _DATE.match(text):
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
        return day + timedelta(days=1) if end_of_day else day
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD), an RFC 3339 time, or a duration such as "
                         "14d or 36h") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_kinds(text: str, enabled: Sequence[str] = LISTED_KINDS) -> tuple[Kind, ...]:
    """Comma-separated kinds (`recording,transcription`: one or more; a plural is taken too), each one
    Stream lists and the `kinds` setting (`enabled`) names. Raises ValueError."""
    names = {part.strip().lower().removesuffix("s") for part in text.split(",") if part.strip()}
    unknown = names - set(LISTED_KINDS)
    if not names or unknown:
        raise ValueError(f"--kinds takes {', '.join(LISTED_KINDS)} (comma-separated), got {text!r}")
    disabled = sorted(names - set(enabled))
    if disabled:
        raise ValueError(f"--kinds: {', '.join(disabled)} not enabled (the configuration's kinds: "
                         f"{', '.join(enabled)})")
    return tuple(k for k in LISTED_KINDS if k in names)


def enabled_listed(enabled: Sequence[str]) -> str:
    """The default of --kinds: every kind Stream lists that the `kinds` setting names."""
    return ",".join(k for k in LISTED_KINDS if k in enabled)


def checkpoint_name(*arguments: object) -> str:
    """A backfill's checkpoint name: the same arguments as typed, the same checkpoint."""
    return "cli-" + hashlib.sha256(json.dumps(arguments, sort_keys=True).encode()).hexdigest()[:16]


def _query(since: str, until: str | None, call_types: Sequence[str], calls: Sequence[str], kinds: str | None,
           enabled: Sequence[str]) -> DiscoveryQuery:
    """The query the arguments ask for (`enabled`: the `kinds` setting); exit 2 with the reason when
    they are not valid."""
    now = datetime.now(UTC)
    try:
        start = parse_moment(since, now)
        end = None if until is None else parse_moment(until, now, end_of_day=True)
        if start > now:
            raise ValueError(f"--since {since} is in the future")
        if kinds is None and not enabled_listed(enabled):
            raise ValueError(f"the configuration's kinds ({', '.join(enabled)}) name none Stream lists")
        return DiscoveryQuery.build(start, end, call_types, calls,
                                    parse_kinds(enabled_listed(enabled) if kinds is None else kinds, enabled))
    except ValueError as exc:
        err.print(f"[bold red]bad arguments:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


def _runtime(settings: Settings | None = None) -> Runtime:
    """The configuration, a reachable Redis and a Stream client (exits 2 or 3 as `archiver` does)."""
    settings = settings or stream_settings()
    open_ledger(settings).redis.close()
    return Runtime.from_settings(settings, actor="cli")


def _enqueue(ids: Sequence[str]) -> None:
    """Hand ids to Celery, which is imported only when there is something to hand over."""
    celery_enqueue()(ids)


def _stream_failed(exc: StreamApiError, *, resumable: bool) -> typer.Exit:
    err.print(f"[bold red]Stream's API failed:[/] {exc}", highlight=False)  # its message has the status and code
    if resumable:
        err.print("The checkpoint keeps every page done: run the same command again to go on from there.")
    return typer.Exit(1)


def backfill_command(
    since: Annotated[str, typer.Option(help="Calls that ended since: 14d, 36h (that long ago), YYYY-MM-DD or "
                                            "RFC 3339.")] = "14d",
    until: Annotated[str | None, typer.Option(help="…and until (a date means the end of that day); default: "
                                                   "now. Calls not ended yet are always included.")] = None,
    call_type: Annotated[list[str] | None, typer.Option("--call-type", help="Only calls of this type "
                                                                            "(repeatable).")] = None,
    call: Annotated[list[str] | None, typer.Option("--call", help="Only this call, TYPE:ID, whatever its "
                                                                  "times (repeatable).")] = None,
    kinds: Annotated[str | None, typer.Option(help=f"{', '.join(LISTED_KINDS)}: one or more, comma-separated, "
                                                   "each in the configuration's `kinds`; default: every one "
                                                   "there.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Record nothing: show what would be.")] = False,
    restart: Annotated[bool, typer.Option("--restart", help="Ignore the checkpoint of an earlier, unfinished "
                                                           "run with these arguments.")] = False,
) -> None:
    """Find every file Stream still holds that the archiver lacks, record it, and queue it (soonest to
    expire first). Resumable: run the same command again after a failure."""
    settings = stream_settings()
    query = _query(since, until, call_type or [], call or [], kinds, settings.archive.kinds)
    runtime = _runtime(settings)
    try:
        name = None if dry_run else checkpoint_name(since, until, sorted(query.call_types), sorted(query.calls),
                                                    list(query.kinds))
        query = _resumable(runtime, name, query, restart)
        summary = _discover_with_progress(runtime, query, name, dry_run)
        enqueued = _hand_over(summary)
    except StreamApiError as exc:
        raise _stream_failed(exc, resumable=not dry_run) from None
    finally:
        runtime.close()
    out.print(_summary_table(summary.counts, runtime.archive.at_risk_margin, dry_run=dry_run,
                             title="backfill (dry run)" if dry_run else "backfill"))
    if not dry_run:
        out.print(f"handed {enqueued} transfer(s) to the workers, soonest to expire first")


def _resumable(runtime: Runtime, name: str | None, query: DiscoveryQuery, restart: bool) -> DiscoveryQuery:
    """The query to run: a saved checkpoint's (its times as they were first resolved), or `query`."""
    if name is None:
        return query
    if restart:
        drop_checkpoint(runtime.ledger, name)
        return query
    saved = saved_query(runtime.ledger, name)
    return saved if saved is not None else query


def _discover_with_progress(runtime: Runtime, query: DiscoveryQuery, name: str | None,
                            dry_run: bool) -> DiscoverySummary:
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err) as bar:
        task = bar.add_task("listing calls", total=None)

        def show(event: DiscoveryEvent) -> None:
            c = event.counts
            bar.update(task, description=f"calls {c.calls_seen} · files {c.files_found} · new {c.new_files}")
            if event.what == "resumed":
                out.print(f"resuming from checkpoint {name} ({c.pages} page(s) done, since {rfc3339(query.since)})")
            elif dry_run and event.what == "file" and event.outcome == "new" and event.file is not None:
                f = event.file
                out.print(f"would record {f.call_cid} {f.kind} {f.filename} → {', '.join(event.storages)}",
                          highlight=False)

        return discover(runtime, since=query.since, until=query.until, call_types=query.call_types,
                        calls=query.calls, kinds=query.kinds, dry_run=dry_run, checkpoint=name, progress=show)


def _hand_over(summary: DiscoverySummary) -> int:
    """Queue the run's transfers; a broker failure is reported, not fatal: the sweep queues them."""
    if not summary.to_queue:
        return 0
    try:
        _enqueue(summary.to_queue)
    except Exception as exc:  # noqa: BLE001 - the ledger has them; the scheduler's sweep queues them
        err.print(f"[yellow]could not queue {len(summary.to_queue)} transfer(s) now[/] ({exc}); they are in the "
                  "ledger and the scheduler's sweep will queue them", highlight=False)
        return 0
    return len(summary.to_queue)


def _summary_table(c: DiscoveryCounts, margin: timedelta, *, dry_run: bool, title: str) -> Table:
    table = Table("", "files" if not dry_run else "files (dry run)", title=title, title_justify="left")
    rows = [
        ("calls seen", c.calls_seen), ("files found", c.files_found), ("already archived", c.already_archived),
        ("known, not archived", c.known_not_archived), ("would record" if dry_run else "new", c.new_files),
        ("would queue" if dry_run else "queued", c.queued), ("left with Stream", c.left_with_stream),
        (f"at risk (< {_hours(margin)})", c.at_risk), ("bytes archived", c.bytes_archived),
    ]
    rows += [("unreadable (skipped)", c.unreadable)] if c.unreadable else []
    rows += [("calls failed (retried next run)", c.failed_calls)] if c.failed_calls else []
    for label, value in rows:
        table.add_row(label, f"{value} ({_bytes(value)})" if label == "bytes archived" else str(value))
    return table


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:g}h"


def _bytes(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} TiB"


def reconcile_command(
    full: Annotated[bool, typer.Option("--full", help="The whole `retention` window (resumable), not only the "
                                                      "calls changed since the last reconciliation.")] = False,
) -> None:
    """Reconcile now: record what Stream holds and the ledger lacks, queue it, and flag every file close
    to deletion and not archived. By default only the calls that ended or changed since the last
    completed reconciliation (less `reconcile_overlap`), and those ongoing; --full: every call of the
    last `retention`, soonest to expire first (a stopped run resumes at its checkpoint)."""
    runtime = _runtime()
    try:
        summary = reconcile(runtime, _enqueue, full=full)
    finally:
        runtime.close()
    _print_reconcile(summary, runtime.archive.at_risk_margin)
    if summary.stream_error is not None:
        err.print(f"[bold red]Stream's API failed[/]: {summary.stream_error}", highlight=False)
        if full:
            err.print("The checkpoint keeps every page done: run the same command again to go on from there.")
        raise typer.Exit(1)


def _print_reconcile(summary: ReconcileSummary, margin: timedelta) -> None:
    since = rfc3339(summary.since) if summary.since else "?"
    if summary.discovery is not None:
        title = f"reconcile ({summary.mode}, calls changed since {since})" if summary.mode == "incremental" \
            else f"reconcile (full, since {since})"
        out.print(_summary_table(summary.discovery.counts, margin, dry_run=False, title=title))
    _print_failed(summary.failed_calls)
    out.print(f"handed {summary.enqueued} transfer(s) to the workers; "
              f"{len(summary.at_risk)} file(s) at risk (< {_hours(margin)} left, not archived)")
    if not summary.at_risk:
        return
    table = Table("call_cid", "kind", "filename", "storage", "state", "expires_at", "left")
    for f in summary.at_risk[:AT_RISK_SHOWN]:
        table.add_row(f.call_cid, f.kind, f.filename, ",".join(f.storages) or "-", f.state,
                      rfc3339(f.expires_at) or "", format_span(f.time_left))
    out.print(table)
    if len(summary.at_risk) > AT_RISK_SHOWN:
        out.print(f"… and {len(summary.at_risk) - AT_RISK_SHOWN} more")


def _print_failed(failed: dict[str, str]) -> None:
    """The calls whose listing failed (this run's and older ones), which the next run lists again."""
    if not failed:
        return
    out.print(f"{len(failed)} call(s) could not be listed; the next reconciliation lists them again:")
    table = Table("call_cid", "error")
    for cid, error in list(failed.items())[:FAILED_SHOWN]:
        table.add_row(cid, error)
    out.print(table)
    if len(failed) > FAILED_SHOWN:
        out.print(f"… and {len(failed) - FAILED_SHOWN} more")
