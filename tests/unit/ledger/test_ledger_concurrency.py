"""Per-storage `max_concurrency` in the ledger's claim (worker/ledger/scripts.py), against a real redis-server."""

from __future__ import annotations

import time

from tests.unit.ledger.test_ledger import a_file, record
from worker.ledger.store import Ledger

LIMITS = {"slow": 1}


def holders(ledger: Ledger, storage: str) -> list[str]:
    """The transfers of `storage` holding a lease: what the claim counts for max_concurrency."""
    return sorted(ledger.redis.zrange(ledger.keys.running(storage), 0, -1))


def two_transfers(ledger: Ledger, storage: str = "slow") -> tuple[str, str]:
    return (record(ledger, a_file("rec_default_x_1.mp4"), storage),
            record(ledger, a_file("rec_default_x_2.mp4"), storage))


def test_with_a_limit_of_one_a_second_claim_is_refused_without_counting_an_attempt(ledger: Ledger) -> None:
    first, second = two_transfers(ledger)
    assert ledger.claim(first, "w1", 60_000, limits=LIMITS).claimed
    before = ledger.now_ms()
    refused = ledger.claim(second, "w2", 60_000, limits=LIMITS, busy_wait_ms=2000)
    after = ledger.now_ms()
    assert refused.status == "storage_busy"
    transfer = ledger.get(second)
    assert transfer is not None
    assert (transfer.state, transfer.attempts, transfer.epoch, transfer.error) == ("queued", 0, 0, None)
    due = ledger.redis.zscore(ledger.keys.due, second)
    assert due is not None and before + 2000 <= due <= after + 2000, "due again shortly, for the sweep"
    assert holders(ledger, "slow") == [first]


def test_after_finish_the_next_transfer_of_the_storage_claims(ledger: Ledger) -> None:
    first, second = two_transfers(ledger)
    claim = ledger.claim(first, "w1", 60_000, limits=LIMITS)
    assert ledger.claim(second, "w2", 60_000, limits=LIMITS).status == "storage_busy"
    assert ledger.finish(first, claim.token, "archived", bytes=1)
    assert holders(ledger, "slow") == []
    assert ledger.claim(second, "w2", 60_000, limits=LIMITS).claimed
    assert holders(ledger, "slow") == [second]


def test_a_retry_later_frees_the_slot_too(ledger: Ledger) -> None:
    first, second = two_transfers(ledger)
    claim = ledger.claim(first, "w1", 60_000, limits=LIMITS)
    assert ledger.finish(first, claim.token, "queued", retry_in_ms=60_000)
    assert ledger.claim(second, "w2", 60_000, limits=LIMITS).claimed


def test_an_expired_lease_frees_the_slot(ledger: Ledger) -> None:
    first, second = two_transfers(ledger)
    assert ledger.claim(first, "w1", 300, limits=LIMITS).claimed
    assert ledger.claim(second, "w2", 1_000, limits=LIMITS).status == "storage_busy"
    time.sleep(0.35)
    assert ledger.claim(second, "w2", 60_000, limits=LIMITS).claimed
    assert ledger.redis.zrange("archiver:running:slow", 0, -1) == [second], "the dead worker's entry is gone"


def test_a_lease_takeover_replaces_the_holder_and_keeps_the_count(ledger: Ledger) -> None:
    first, _ = two_transfers(ledger)
    assert ledger.claim(first, "w1", 200, limits=LIMITS).claimed
    time.sleep(0.25)
    before = ledger.now_ms()
    taken = ledger.claim(first, "w2", 60_000, limits=LIMITS)
    assert (taken.status, taken.epoch) == ("claimed", 2)
    score = ledger.redis.zscore("archiver:running:slow", first)
    assert score is not None and before + 60_000 <= score <= ledger.now_ms() + 60_000
    assert holders(ledger, "slow") == [first]


def test_heartbeat_extends_the_running_entry(ledger: Ledger) -> None:
    first, _ = two_transfers(ledger)
    claim = ledger.claim(first, "w1", 1_000, limits=LIMITS)
    assert ledger.heartbeat(first, claim.token, 60_000)
    score = ledger.redis.zscore("archiver:running:slow", first)
    assert score is not None and score > ledger.now_ms() + 50_000


def test_the_limit_counts_per_storage_and_other_storages_are_unlimited(ledger: Ledger) -> None:
    slow, _ = two_transfers(ledger)
    fast = [record(ledger, a_file(f"rec_default_x_{n}.mp4"), "fast") for n in range(3, 6)]
    assert ledger.claim(slow, "w1", 60_000, limits=LIMITS).claimed
    assert all(ledger.claim(tid, "w", 60_000, limits=LIMITS).claimed for tid in fast)
    assert holders(ledger, "fast") == sorted(fast)


def test_a_limit_of_two_admits_two(ledger: Ledger) -> None:
    tids = [record(ledger, a_file(f"rec_default_x_{n}.mp4"), "slow") for n in range(3)]
    outcomes = [ledger.claim(tid, "w", 60_000, limits={"slow": 2}).status for tid in tids]
    assert outcomes == ["claimed", "claimed", "storage_busy"]
