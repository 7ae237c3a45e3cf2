"""An audit's report as JSON lines, CSV or one self-contained HTML page (the table is the CLI's).

- ``json``: one object per file and destination checked (`AuditRow.to_json`: exactly
  ``call_cid, kind, filename, storage, key, verdict, detail``), then one ``{"summary": {verdict:
  count}}`` line with every verdict.
- ``csv``: a header row, then the same rows (RFC 4180, CRLF; a cell a spreadsheet would run as a
  formula gets a leading ``'``, as `archiver transfers export` writes it).
- ``html``: one page a compliance officer can keep: the scope, when, the counts, every problem,
  then every row. No script, no external asset (its style is inline), every value escaped.

Rows are written as they are read, so a large audit never sits in memory.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from html import escape
from typing import Literal, TextIO

from worker.audit.model import PROBLEMS, ROW_FIELDS, VERDICTS, AuditRow, AuditSummary
from worker.clock import rfc3339
from worker.ledger.export import csv_cell

Format = Literal["table", "json", "csv", "html"]
FORMATS: tuple[Format, ...] = ("table", "json", "csv", "html")


def write_json(rows: Iterable[AuditRow], summary: AuditSummary, out: TextIO) -> None:
    for row in rows:
        out.write(json.dumps(row.to_json(), ensure_ascii=False) + "\n")
    out.write(json.dumps({"summary": summary.counts.to_json()["verdicts"]}) + "\n")


def write_csv(rows: Iterable[AuditRow], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(ROW_FIELDS)
    for row in rows:
        public = row.to_json()
        writer.writerow([csv_cell(public[name]) for name in ROW_FIELDS])


_STYLE = ("body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}"
          "table{border-collapse:collapse;margin:.5em 0 1.5em}"
          "th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}th{background:#f3f3f3}"
          "td.n{text-align:right}.problem{color:#a00;font-weight:bold}.ok{color:#070}"
          "code{font-size:12px;word-break:break-all}")


def write_html(rows: Iterable[AuditRow], problems: Iterable[AuditRow], summary: AuditSummary, out: TextIO) -> None:
    """The page; `problems` are the problem rows of `rows` (both iterated once)."""
    e = _esc
    counts = summary.counts
    out.write(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>archive audit {e(rfc3339(summary.finished_at))}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head><body>
<h1>Archive audit</h1>
<p>Scope: {e(summary.query.describe())}.<br>Started {e(rfc3339(summary.started_at))}, finished
{e(rfc3339(summary.finished_at))}{" (resumed after an interruption)" if summary.resumed else ""}.<br>
Compared for every file: what Stream lists, what the archiver's ledger says, and what each destination storage
holds. {e(counts.calls_listed)} call(s) listed, {e(counts.files)} file(s), {e(counts.objects)} object(s) checked,
{e(counts.requeued)} queued again, {e(counts.recorded)} recorded now.</p>
<h2>Summary</h2>
<table><thead><tr><th>verdict</th><th>files × destinations</th></tr></thead><tbody>
""")
    for verdict in VERDICTS:
        mark = ' class="problem"' if verdict in PROBLEMS and counts.verdicts.get(verdict) else ""
        out.write(f"<tr><td{mark}>{e(verdict)}</td><td class=\"n\">{e(counts.verdicts.get(verdict, 0))}</td></tr>\n")
    out.write(f"</tbody></table>\n<h2>Problems ({e(counts.problems)})</h2>\n")
    _rows_table(problems, out, "No problem found.")
    out.write("<h2>Every file and destination checked</h2>\n")
    _rows_table(rows, out, "Nothing was in scope.")
    out.write("</body></html>\n")


def _rows_table(rows: Iterable[AuditRow], out: TextIO, empty: str) -> None:
    head = "".join(f"<th>{_esc(name)}</th>" for name in ROW_FIELDS)
    count = 0
    for row in rows:
        if count == 0:
            out.write(f"<table><thead><tr>{head}</tr></thead><tbody>\n")
        count += 1
        verdict = f'<td class="{"problem" if row.problem else "ok"}">{_esc(row.verdict)}</td>'
        cells = [_esc(row.call_cid), _esc(row.kind), f"<code>{_esc(row.filename)}</code>", _esc(row.storage or ""),
                 f"<code>{_esc(row.key or '')}</code>"]
        out.write("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + verdict + f"<td>{_esc(row.detail)}</td></tr>\n")
    out.write("</tbody></table>\n" if count else f"<p>{_esc(empty)}</p>\n")


def _esc(value: object) -> str:
    return escape(str(value), quote=True)
