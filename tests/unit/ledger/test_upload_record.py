"""The record of an unfinished upload (``upload:<tid>``, `Ledger.save_upload`), against a real redis-server:
fenced by the claim's token, kept while the transfer waits to retry, gone with every final state."""

from __future__ import annotations

import time

import pytest

from tests.unit.ledger.test_ledger import a_file, record
from worker.ledger.store import Ledger
from worker.storage.base import Piece, UploadState

STATE = UploadState(16, (Piece(8, "AAAAAA=="), Piece(8, "BBBBBB==")), {"temp": ".a.mp4.0123.partial"})


def test_the_running_attempt_records_its_upload_and_the_next_one_reads_it_with_the_transfer(ledger: Ledger) -> None:
    tid = record(ledger, a_file())
    token = ledger.claim(tid, "w1", 60_000).token
    assert ledger.save_upload(tid, token, STATE.to_json())
    assert ledger.finish(tid, token, "queued", retry_in_ms=0, error="cut")
    transfer = ledger.get(tid)
    assert transfer is not None and transfer.upload is not None
    assert UploadState.from_json(transfer.upload) == STATE
    assert ".a.mp4.0123.partial" not in repr(transfer)  # a handle may be a capability: never in a repr


def test_a_worker_that_lost_its_lease_cannot_write_or_delete_the_record(ledger: Ledger) -> None:
    tid = record(ledger, a_file())
    old = ledger.claim(tid, "w1", 100).token
    time.sleep(0.15)  # by Redis's clock: the lease ran out
    new = ledger.claim(tid, "w2", 60_000).token
    assert ledger.save_upload(tid, new, STATE.to_json())
    assert not ledger.save_upload(tid, old, UploadState(8, (Piece(8, "CCCCCC=="),), {"temp": "x"}).to_json())
    assert not ledger.save_upload(tid, old, "")
    transfer = ledger.get(tid)
    assert transfer is not None and transfer.upload == STATE.to_json()


def test_a_fresh_upload_deletes_the_record(ledger: Ledger) -> None:
    tid = record(ledger, a_file())
    token = ledger.claim(tid, "w1", 60_000).token
    assert ledger.save_upload(tid, token, STATE.to_json()) and ledger.save_upload(tid, token, "")
    assert ledger.redis.exists(ledger.keys.upload(tid)) == 0


@pytest.mark.parametrize("state", ["archived", "failed", "lost", "skipped"])
def test_every_final_state_deletes_the_record(ledger: Ledger, state: str) -> None:
    tid = record(ledger, a_file())
    token = ledger.claim(tid, "w1", 60_000).token
    assert ledger.save_upload(tid, token, STATE.to_json())
    assert ledger.finish(tid, token, state)  # type: ignore[arg-type]
    transfer = ledger.get(tid)
    assert transfer is not None and transfer.upload is None
    assert ledger.redis.exists(ledger.keys.upload(tid)) == 0


def test_an_upload_state_survives_json_and_refuses_what_is_not_one() -> None:
    assert UploadState.from_json(STATE.to_json()) == STATE
    for text in ("", "{}", '{"offset": 5, "pieces": [[4, "x"]], "handle": {}}', "[1]"):
        with pytest.raises(ValueError):
            UploadState.from_json(text)
