"""The ledger for audits (`archiver transfers export`): one row per transfer, with its file's facts.

Files waiting for their routes (no transfer yet) are rows too, in the state ``routing`` with no
storage, as `archiver transfers list` shows them (`worker.ledger.unrouted`).

Rows are read in batches (one pipeline for the transfers, one for their files) and written as they
come, so a ledger of 100,000 transfers never sits in memory. A row holds the transfer's public
fields (`Transfer.to_json`) and the file's audit facts (recording type, egress, start and end,
when it was recorded and deleted from Stream). Never the file's signed URL: it is a credential
(until it expires). Error texts pass `config.logging.scrub`, as they would in a log line.

In CSV, a text cell that a spreadsheet would read as a formula (it starts with `=`, `+`, `-`, `@`,
a tab or a carriage return, OWASP's list) is written with a leading `'`, so a file name from Stream
cannot run as a formula where the export is opened. JSON holds the values unchanged.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any, Literal, TextIO, cast

from config.logging import scrub
from worker.clock import from_ms, rfc3339
from worker.ledger.models import ROUTING
from worker.ledger.store import Ledger
from worker.ledger.unrouted import by_creation, waiting_files

ExportFormat = Literal["csv", "json"]
FORMATS: tuple[ExportFormat, ...] = ("csv", "json")
TRANSFER_COLUMNS = ("id", "state", "call_cid", "session_id", "kind", "filename", "storage", "key", "replaced_key",
                    "bytes", "sha256", "attempts", "error", "reason", "created_at", "updated_at", "next_attempt_at",
                    "expires_at", "file_id")
FILE_COLUMNS = ("recording_type", "egress_id", "start_time", "end_time", "file_recorded_at",
                "deleted_from_stream", "deleted_from_stream_at")
COLUMNS = TRANSFER_COLUMNS + FILE_COLUMNS
SCRUBBED = ("error", "reason")
BATCH = 500
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def audit_rows(ledger: Ledger, state: str | None = None, batch: int = BATCH) -> Iterator[dict[str, Any]]:
    """Every transfer (or those in `state`), oldest first, as a row of `COLUMNS`; with no state (or
    state ``routing``) the files waiting for their routes too, as `archiver transfers list` shows them."""
    if state not in (None, ROUTING):
        yield from _transfer_rows(ledger, state, batch)
        return
    waiting = [w.to_json() for w in waiting_files(ledger, batch=batch)]
    waiting_rows = chain.from_iterable(_with_files(ledger, waiting[start:start + batch])
                                       for start in range(0, len(waiting), batch))
    yield from waiting_rows if state == ROUTING else by_creation(_transfer_rows(ledger, None, batch), waiting_rows)


def _transfer_rows(ledger: Ledger, state: str | None, batch: int) -> Iterator[dict[str, Any]]:
    pending: list[dict[str, Any]] = []
    for transfer in ledger.iter_transfers(state, batch):
        pending.append(transfer.to_json())
        if len(pending) >= batch:
            yield from _with_files(ledger, pending)
            pending = []
    yield from _with_files(ledger, pending)


def _with_files(ledger: Ledger, publics: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """`publics` (rows in `Transfer.to_json`'s shape) with their files' facts, in one pipeline."""
    file_ids = sorted({str(p["file_id"]) for p in publics})
    pipe = ledger.redis.pipeline(transaction=False)
    for fid in file_ids:
        pipe.hmget(ledger.keys.file(fid), ["recording_type", "egress_id", "start_time", "end_time",
                                           "created_at", "deleted_from_stream", "deleted_from_stream_at"])
    files = dict(zip(file_ids, cast(list[list[str | None]], pipe.execute()), strict=True))
    for public in publics:
        yield _row(public, files[str(public["file_id"])])


def _row(public: dict[str, Any], file: list[str | None]) -> dict[str, Any]:
    row = {name: public.get(name) for name in TRANSFER_COLUMNS}
    for name in SCRUBBED:
        if row[name] is not None:
            row[name] = scrub(str(row[name]))
    recording_type, egress_id, start, end, recorded, deleted, deleted_at = file
    row |= {"recording_type": recording_type or None, "egress_id": egress_id or None,
            "start_time": rfc3339(from_ms(start)), "end_time": rfc3339(from_ms(end)),
            "file_recorded_at": rfc3339(from_ms(recorded)), "deleted_from_stream": deleted or None,
            "deleted_from_stream_at": rfc3339(from_ms(deleted_at))}
    return row


def write_csv(rows: Iterable[dict[str, Any]], out: TextIO) -> int:
    """A header row, then one row per transfer (empty cells for nulls); returns the row count. Lines end
    in CRLF (RFC 4180), so a cell holding a lone CR is quoted too and the rows read back intact."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    count = 0
    for row in rows:
        writer.writerow([csv_cell(row[name]) for name in COLUMNS])
        count += 1
    return count


def csv_cell(value: Any) -> Any:
    """`value` as a CSV cell: None is empty; text a spreadsheet would run as a formula gets a leading `'`."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_json(rows: Iterable[dict[str, Any]], out: TextIO) -> int:
    """One JSON array, written object by object; returns the row count."""
    count = 0
    for row in rows:
        out.write(("[\n" if count == 0 else ",\n") + json.dumps(row, ensure_ascii=False))
        count += 1
    out.write("[]\n" if count == 0 else "\n]\n")
    return count


def write_export(ledger: Ledger, out: TextIO, fmt: ExportFormat = "csv", state: str | None = None) -> int:
    """Write the audit export of `state` (None: every transfer) to `out`; returns the row count."""
    rows = audit_rows(ledger, state)
    return write_csv(rows, out) if fmt == "csv" else write_json(rows, out)
