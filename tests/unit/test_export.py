"""The audit export (worker/export.py) in-process: batches, hostile names, and what it never holds."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import timedelta

from tests.support.ledger_states import a_file, add
from worker.export import COLUMNS, audit_rows, write_csv, write_json
from worker.files import transfer_id
from worker.ledger import Ledger, NewTransfer

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
    assert sorted(row["filename"] for row in csv.DictReader(io.StringIO(as_csv.getvalue()))) == sorted(HOSTILE)
    assert sorted(row["filename"] for row in json.loads(as_json.getvalue())) == sorted(HOSTILE)


def test_no_row_holds_the_signed_url(ledger: Ledger) -> None:
    add(ledger, "u1", "archived")
    add(ledger, "u2", "failed")
    out = io.StringIO()
    write_json(audit_rows(ledger), out)
    assert "sig=" not in out.getvalue() and "SIGNED-URL-SECRET" not in out.getvalue()
    assert "url" not in COLUMNS
