"""The audit's report formats (worker/audit/formats.py): JSON lines, CSV and one self-contained HTML page."""

from __future__ import annotations

import csv
import io
import json
import re

from tests.unit.audit.test_last_audit import HOSTILE, summary_with
from worker.audit.formats import write_csv, write_html, write_json
from worker.audit.model import VERDICTS, AuditRow

ROWS = [
    AuditRow("default:a", "recording", "a.mp4", "s3", "default/a/a.mp4", "ok"),
    AuditRow("default:b", "recording", "=HYPERLINK(\"x\")", "disk", "default/b/x", "mismatch", "holds 3 bytes"),
    AuditRow("default:c", "transcription", "c.jsonl", None, None, "unarchived", "waiting for its routes"),
]


def test_json_gives_one_object_per_row_with_exactly_the_public_fields_then_the_summary() -> None:
    out = io.StringIO()
    write_json(ROWS, summary_with([ROWS[1]], ok=1), out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [list(line) for line in lines[:3]] == [["call_cid", "kind", "filename", "storage", "key", "verdict",
                                                   "detail"]] * 3
    assert lines[2] == {"call_cid": "default:c", "kind": "transcription", "filename": "c.jsonl", "storage": None,
                        "key": None, "verdict": "unarchived", "detail": "waiting for its routes"}
    assert lines[3] == {"summary": {v: {"ok": 1, "mismatch": 1}.get(v, 0) for v in VERDICTS}}
    assert len(lines) == 4


def test_csv_has_a_header_and_a_formula_is_never_run() -> None:
    out = io.StringIO()
    write_csv(ROWS, out)
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == ["call_cid", "kind", "filename", "storage", "key", "verdict", "detail"]
    assert rows[2][2] == "'=HYPERLINK(\"x\")" and rows[3][3:5] == ["", ""] and len(rows) == 4


def test_the_html_page_is_self_contained_and_escapes_everything() -> None:
    hostile = AuditRow("default:x", "recording", HOSTILE, "disk", HOSTILE, "missing", HOSTILE)
    out = io.StringIO()
    write_html([*ROWS, hostile], [ROWS[1], hostile], summary_with([ROWS[1], hostile]), out)
    page = out.getvalue()
    assert "<script" not in page and "&lt;script&gt;" in page
    assert not re.search(r"""(src|href)\s*=|@import|url\(""", page)  # no external asset, not even a link
    problems = page.split("<h2>Problems (2)</h2>")[1].split("<h2>")[0]
    assert problems.count("<tr>") == 3 and "holds 3 bytes" in problems
    everything = page.split("<h2>Every file and destination checked</h2>")[1]
    assert everything.count("<tr>") == 5
    assert '<td class="problem">missing</td><td class="n">1</td>' in page
