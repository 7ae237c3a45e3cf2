"""`archiver find`: archived files by call, call type, time, custom data and kind, newest first, with
the storage and key of each (`worker.ledger.search`, from the index of `worker.ledger.index`).

Exit codes: 0 done (an empty result too: it is said on stderr); 2 bad arguments or configuration;
3 Redis unreachable.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from worker.clock import rfc3339, to_ms
from worker.edge.cli._boot import err, ledger_settings, open_ledger, out
from worker.edge.cli.discovery import parse_moment
from worker.files import KINDS
from worker.ledger.calls import split_query
from worker.ledger.search import FindQuery, Match, find, iter_matches
from worker.ledger.store import Ledger

LIMIT = 100


def parse_query(call: str | None, call_type: str | None, since: str | None, until: str | None,
                custom: list[str], kind: str | None, now: datetime) -> FindQuery:
    """The search the options ask for. Raises ValueError naming the option at fault."""
    for term in custom:
        if not term.partition("=")[0] or "=" not in term:
            raise ValueError(f"--custom takes KEY=VALUE (a key of the call's custom data), got {term!r}")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"--kind takes one of {', '.join(KINDS)}, got {kind!r}")
    if call is not None and not split_query(call)[0]:
        raise ValueError(f"--call takes a call cid (type:id) or a call id, got {call!r}")
    try:
        start = None if since is None else to_ms(parse_moment(since, now))
        end = None if until is None else to_ms(parse_moment(until, now, end_of_day=True))
    except ValueError as exc:
        raise ValueError(f"--since/--until: {exc}") from None
    if start is not None and end is not None and start >= end:
        raise ValueError("--since must be before --until")
    return FindQuery(call=call.strip() if call else None, call_type=call_type or None, since_ms=start,
                     until_ms=end, custom=tuple(dict.fromkeys(custom)), kind=kind)


def find_command(
    call: Annotated[str | None, typer.Option("--call", help="Only this call: its cid (type:id), or its id "
                                                            "alone (every call of that id).")] = None,
    call_type: Annotated[str | None, typer.Option("--call-type", help="Only calls of this type.")] = None,
    since: Annotated[str | None, typer.Option(help="Files that started since: 14d, 36h (that long ago), "
                                                   "YYYY-MM-DD (UTC) or RFC 3339.")] = None,
    until: Annotated[str | None, typer.Option(help="…and before this (a date means the end of that day).")] = None,
    custom: Annotated[list[str] | None, typer.Option("--custom", help="KEY=VALUE: only calls whose custom "
                                                                      "data has this value, exactly "
                                                                      "(repeatable: all must hold).")] = None,
    kind: Annotated[str | None, typer.Option(help=f"Only this kind: {', '.join(KINDS)}.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line, as `transfers show` "
                                                         "gives it.")] = False,
    limit: Annotated[int, typer.Option(min=0, help="At most this many (0: all). When more match, stderr "
                                                   "says so.")] = LIMIT,
) -> None:
    """Archived files, newest first (by when they started), with the storage and key of each: one row
    per storage holding a file. Every filter given must hold."""
    try:
        query = parse_query(call, call_type, since, until, custom or [], kind, datetime.now(UTC))
    except ValueError as exc:
        err.print(f"[bold red]bad arguments:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    ledger = open_ledger(ledger_settings())
    if as_json:
        shown, more = _write_json(ledger, query, limit)
    else:
        found = find(ledger, query, limit or None)
        if found.matches:
            out.print(_table(found.matches))
        shown, more = len(found.matches), found.more
    _summary(shown, more, limit)


def _write_json(ledger: Ledger, query: FindQuery, limit: int) -> tuple[int, bool]:
    """Write each match as it is read (a result of any size in constant memory); (how many were
    written, whether more than `limit` match)."""
    written = 0
    for match in iter_matches(ledger, query):
        if limit and written == limit:
            return written, True
        sys.stdout.write(json.dumps(match.transfer.to_json()) + "\n")
        written += 1
    return written, False


def _table(matches: tuple[Match, ...]) -> Table:
    table = Table("started", "call_cid", "kind", "filename", "storage", "key", "bytes", "archived_at", "id")
    for m in matches:
        t = m.transfer
        table.add_row(rfc3339(m.started_at), t.call_cid, t.kind, t.filename, t.storage, t.key,
                      "" if t.bytes is None else str(t.bytes), rfc3339(t.updated_at) or "", t.id)
    return table


def _summary(shown: int, more: bool, limit: int) -> None:
    """On stderr, so stdout holds only the results: none found, or more than shown."""
    if not shown:
        err.print("no archived file matches")
    elif more:
        err.print(f"showing the newest {limit}; more archived files match (--limit 0 shows all, or narrow "
                  "the search)", highlight=False)
