"""Pruning archived transfers (worker/ledger/prune.py) in-process: batches, and files shared by transfers."""

from __future__ import annotations

from datetime import timedelta

from tests.support.ledger_states import add
from worker.ledger.prune import prune_archived
from worker.ledger.store import Ledger


def test_pruning_in_small_batches_forgets_every_old_archived_transfer_and_file(ledger: Ledger) -> None:
    for n in range(5):
        add(ledger, f"old{n}", "archived", storages=("disk", "s3"), days_ago=100)
    (kept,) = add(ledger, "queued", days_ago=100)
    dry = prune_archived(ledger, timedelta(days=90), dry_run=True, batch=3)
    assert (dry.transfers, dry.files, dry.outcomes["would_prune"]) == (10, 5, 10)
    done = prune_archived(ledger, timedelta(days=90), batch=3)
    assert (done.transfers, done.files) == (10, 5)
    assert ledger.ids() == [kept]
    transfer = ledger.get(kept)
    assert transfer is not None
    fkey = f"archiver:file:{transfer.file_id}"
    assert sorted(ledger.redis.keys("archiver:file:*")) == [fkey, f"{fkey}:transfers"]
    assert ledger.redis.keys("archiver:call_files:*") == ["archiver:call_files:queued"]  # its call's index too
    assert prune_archived(ledger, timedelta(days=90)).transfers == 0  # a second run finds nothing


def test_a_file_waiting_for_more_routes_keeps_its_record(ledger: Ledger) -> None:
    (tid,) = add(ledger, "pending", "archived", days_ago=100)
    transfer = ledger.get(tid)
    assert transfer is not None
    file_id = transfer.file_id
    ledger.redis.hset(f"archiver:file:{file_id}", "routing", "pending")
    summary = prune_archived(ledger, timedelta(days=90))
    assert (summary.transfers, summary.files) == (1, 0)
    assert ledger.file(file_id)["routing"] == "pending"
