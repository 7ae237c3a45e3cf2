"""The audit export (worker/ledger/export.py) in-process: batches, hostile names, and what it never holds."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import timedelta

from tests.support.ledger_states import a_file, add
from worker.files import transfer_id
from worker.ledger.export import COLUMNS, audit_rows, write_csv, write_json
from worker.ledger.models import NewTransfer
from worker.ledger.store import Ledger

HOSTILE = ['comma, "quoted"\nnewline.mp4', "ünïcødé 録画.mp4", "=HYPERLINK(1).mp4", "tab\there?.mp4"]


def test_rows_carry_each_transfers_own_file_across_batch_boundaries(ledger: Ledger) -> None:
    ids = [tid for n in range(7) for tid in add(ledger, f"c{n}", "archived", storages=("disk", "s3"))]
    rows = list(audit_rows(ledger, batch=3))
    assert [row["id"] for row in rows] == ledger.ids() and sorted(ids) == sorted(ledger.ids())
    for row in rows:
        assert row["egress_id"] == f"eg-{row['call_cid'].split(':')[1]}"
        assert list(row) == list(COLUMNS)


def test_hostile_filenames_survive_csv_and_json(ledger: Ledger) -> None:
    for name in HOSTILE:
        file = replace(a_file("h"), filename=name)
        ledger.record(file, [NewTransfer(transfer_id(file.file_id, "disk"), "disk", name)],
                      expires_at=file.end_time + timedelta(days=14))
    as_csv, as_json = io.StringIO(), io.StringIO()
    assert write_csv(audit_rows(ledger), as_csv) == len(HOSTILE)
    assert write_json(audit_rows(ledger), as_json) == len(HOSTILE)
    in_csv = sorted(row["filename"] for row in csv.DictReader(io.StringIO(as_csv.getvalue())))
    assert in_csv == sorted("'" + name if name.startswith("=") else name for name in HOSTILE)
    assert sorted(row["filename"] for row in json.loads(as_json.getvalue())) == sorted(HOSTILE)


FORMULAS = ["=1+1.mp4", "+SUM(A1).mp4", "-2+3.mp4", "@cmd.mp4", "\tlead-tab.mp4", "\rlead-cr.mp4"]


def test_csv_cells_a_spreadsheet_would_run_as_formulas_get_a_leading_quote(ledger: Ledger) -> None:
    for name in [*FORMULAS, "plain.mp4", "'quoted.mp4"]:
        file = replace(a_file(f"f{len(name)}{name[0]!r}"), filename=name)
        ledger.record(file, [NewTransfer(transfer_id(file.file_id, "disk"), "disk", name)],
                      expires_at=file.end_time + timedelta(days=14))
    as_csv, as_json = io.StringIO(), io.StringIO()
    write_csv(audit_rows(ledger), as_csv)
    write_json(audit_rows(ledger), as_json)
    rows = list(csv.DictReader(io.StringIO(as_csv.getvalue(), newline="")))
    assert sorted(row["filename"] for row in rows) == sorted(
        ["'" + name for name in FORMULAS] + ["plain.mp4", "'quoted.mp4"])
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for cell in row.values())
    assert all(row["bytes"] == "" and row["created_at"][0].isdigit() for row in rows)
    assert sorted(row["filename"] for row in json.loads(as_json.getvalue())) == sorted(
        [*FORMULAS, "plain.mp4", "'quoted.mp4"])


def test_no_row_holds_the_signed_url(ledger: Ledger) -> None:
    add(ledger, "u1", "archived")
    add(ledger, "u2", "failed")
    out = io.StringIO()
    write_json(audit_rows(ledger), out)
    assert "sig=" not in out.getvalue() and "SIGNED-URL-SECRET" not in out.getvalue()
    assert "url" not in COLUMNS
