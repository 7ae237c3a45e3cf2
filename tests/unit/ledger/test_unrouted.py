"""Files waiting for their routes (worker/ledger/unrouted.py): their rows and figures, against a real redis-server."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.support.ledger_states import a_file, add, add_waiting
from worker.clock import now_ms, rfc3339
from worker.ledger import unrouted
from worker.ledger.models import NewTransfer
from worker.ledger.store import Ledger
from worker.ledger.unrouted import PENDING_TEXT, listed_rows, read_routing, waiting_files

ERROR = "Stream API GET /api/v2/video/call/default/w1: ConnectError"


def route(ledger: Ledger, name: str) -> str:
    """Give waiting file `name` its one transfer, as `resolve_file` does; returns the transfer id."""
    file = a_file(name)
    tid = f"t_{file.file_id}_disk"
    ledger.record(file, [NewTransfer(tid, "disk", f"k/{name}")], expires_at=file.end_time + timedelta(days=14))
    return tid


def test_a_waiting_file_is_a_routing_row_with_no_storage_and_says_why_it_waits(ledger: Ledger) -> None:
    """Before any lookup it waits for one; after a failed lookup, the lookup's error and count show."""
    fid = add_waiting(ledger, "w1")
    (row,) = listed_rows(ledger, "routing")
    file = a_file("w1")
    assert row["id"] == row["file_id"] == fid and row["state"] == "routing"
    assert (row["storage"], row["key"], row["bytes"], row["sha256"]) == (None, None, None, None)
    assert (row["call_cid"], row["kind"], row["filename"]) == ("default:w1", "recording", file.filename)
    assert row["expires_at"] == rfc3339(file.end_time + timedelta(days=14))
    assert (row["attempts"], row["error"], row["reason"]) == (0, PENDING_TEXT, "call_lookup_pending")

    assert ledger.defer_routing(fid, 30_000, ERROR)
    assert ledger.defer_routing(fid, 30_000, ERROR)
    (row,) = listed_rows(ledger, "routing")
    assert (row["attempts"], row["error"], row["reason"]) == (2, ERROR, "call_lookup_failed")
    assert row["next_attempt_at"] == rfc3339(waiting_files(ledger)[0].next_attempt_at)
    assert row["updated_at"] is not None and row["updated_at"] >= row["created_at"]


def test_a_routed_file_leaves_the_routing_rows_and_its_transfer_takes_its_place(ledger: Ledger) -> None:
    fid = add_waiting(ledger, "w1")
    ledger.defer_routing(fid, 0, ERROR)
    tid = route(ledger, "w1")
    assert list(listed_rows(ledger, "routing")) == [] and waiting_files(ledger, [fid]) == []
    assert [r["id"] for r in listed_rows(ledger)] == [tid]
    assert not ledger.defer_routing(fid, 0, ERROR)  # no longer waiting: nothing changes


def test_the_whole_list_merges_transfers_and_waiting_files_oldest_first(ledger: Ledger) -> None:
    (first,) = add(ledger, "t1")
    older = add_waiting(ledger, "w1", created=now_ms() - 60_000)
    newer = add_waiting(ledger, "w2", created=now_ms() + 60_000)
    rows = list(listed_rows(ledger))
    assert [r["id"] for r in rows] == [older, first, newer]
    assert [r["state"] for r in rows] == ["routing", "queued", "routing"]
    assert [r["id"] for r in listed_rows(ledger, "queued")] == [first]


def test_waiting_files_by_id_finds_only_waiting_ones(ledger: Ledger) -> None:
    fid = add_waiting(ledger, "w1")
    (tid,) = add(ledger, "t1")
    assert [w.file_id for w in waiting_files(ledger, [tid, fid, "f_unknown"])] == [fid]
    assert waiting_files(ledger, []) == []


def test_figures_count_each_reason_and_age_the_oldest_across_chunks(ledger: Ledger,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The count runs inside Redis a chunk at a time; the oldest is the earliest recorded, not the next due."""
    monkeypatch.setattr(unrouted, "CHUNK", 2)
    now = now_ms()
    oldest = add_waiting(ledger, "w1", created=now - 300_000, due=now + 50_000)
    for n, created in enumerate((now - 100_000, now - 200_000, now - 10_000), start=2):
        add_waiting(ledger, f"w{n}", created=created, due=now + n)
    ledger.defer_routing(oldest, 50_000, ERROR)
    route(ledger, "w4")  # routed: no longer counted
    figures = read_routing(ledger.redis)
    assert figures.by_reason == {"call_lookup_pending": 2, "call_lookup_failed": 1} and figures.total == 3
    assert figures.oldest_age(now / 1000) == pytest.approx(300.0)
    empty = read_routing(ledger.redis, prefix="other:")
    assert empty.total == 0 and empty.oldest_age(now / 1000) == 0.0
