"""The ledger side of an audit (worker/audit/ledger_side.py): its walk of the transfers index, ties included."""

from __future__ import annotations

from tests.support.ledger_states import add
from worker.audit.ledger_side import Cursor, created_between
from worker.ledger.calls import read_files
from worker.ledger.store import Ledger


def test_the_walk_takes_every_transfer_of_the_window_once_even_many_created_in_one_millisecond(
        ledger: Ledger) -> None:
    tids = [tid for n in range(12) for tid in add(ledger, f"f{n}")]
    scores = {tid: 1000 + (n // 5) for n, tid in enumerate(tids)}  # five of each time: ties across batches
    scores[tids[-1]] = 5000  # outside the window
    ledger.redis.zadd(ledger.keys.transfers, scores)
    files = {tid: ledger.redis.hget(ledger.keys.transfer(tid), "file_id") for tid in tids}
    order = sorted(tids[:-1], key=lambda tid: (scores[tid], tid))  # Redis orders ties by member

    walked, cursors = [], []
    for fids, after in created_between(ledger, 1000, 4000, Cursor(), batch=3):
        walked += fids
        cursors.append(after)
    cursor = cursors[-1]
    assert walked == [files[tid] for tid in order]
    assert cursor == Cursor(1002, 1)  # eleven taken: 5 at 1000, 5 at 1001, 1 at 1002

    resumed = [fid for fids, _ in created_between(ledger, 1000, 4000, Cursor(1001, 2), batch=4) for fid in fids]
    assert resumed == [files[tid] for tid in order[7:11]]
    assert Cursor.from_json(Cursor(1001, 2).to_json()) == Cursor(1001, 2)
    assert Cursor.from_json(Cursor().to_json()) == Cursor() and Cursor.from_json(None) == Cursor()


def test_read_files_gives_each_file_with_its_transfers_and_never_its_signed_url(ledger: Ledger) -> None:
    (tid,) = add(ledger, "one", "archived")
    fid = ledger.redis.hget(ledger.keys.transfer(tid), "file_id")
    found = read_files(ledger, [fid, "f_unknown"])
    assert [t.id for t in found[fid].transfers] == [tid] and "url" not in found[fid].fields
    assert found[fid].fields["call_cid"] == "default:one"
    assert found["f_unknown"].fields == {} and found["f_unknown"].transfers == ()
