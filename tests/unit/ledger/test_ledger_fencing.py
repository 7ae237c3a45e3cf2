"""Fencing in the ledger's claim (worker/ledger/scripts.py), against a real redis-server: a random token
per claim (an epoch can be handed out twice when Redis loses its last writes), and leases judged by
Redis's clock, never by the caller's."""

from __future__ import annotations

import time
from typing import cast

import pytest

from tests.unit.ledger.test_ledger import a_file, record
from worker.ledger.store import Ledger

SKEW_NS = 90 * 1_000_000_000  # a clock 90 s off


def snapshot(ledger: Ledger) -> dict[str, bytes]:
    """Every ledger key, dumped: what Redis still holds after it loses the writes made after this."""
    raw = ledger.redis
    return {key: cast(bytes, raw.dump(key)) for key in raw.scan_iter(f"{ledger.prefix}*")}


def lose_writes_since(ledger: Ledger, kept: dict[str, bytes]) -> None:
    """Redis back to `kept`, as after a crash with AOF everysec or a Sentinel failover to a replica
    that had not received the last writes."""
    raw = ledger.redis
    for key in raw.scan_iter(f"{ledger.prefix}*"):
        raw.delete(key)
    for key, dumped in kept.items():
        raw.restore(key, 0, dumped)


def test_an_epoch_handed_out_twice_does_not_let_the_stale_worker_write(ledger: Ledger) -> None:
    """w1 claims; Redis loses that write; w2 claims and gets the same epoch. w1's heartbeat and its
    retry-later are refused, w2 archives, and `archived` stays whatever w1 sends afterwards."""
    tid = record(ledger, a_file())
    kept = snapshot(ledger)
    stale = ledger.claim(tid, "w1", 60_000)
    lose_writes_since(ledger, kept)
    live = ledger.claim(tid, "w2", 60_000)
    assert stale.claimed and live.claimed and stale.epoch == live.epoch == 1, "the same epoch, twice"

    assert not ledger.heartbeat(tid, stale.token, 60_000)
    assert not ledger.finish(tid, stale.token, "queued", retry_in_ms=1_000, error="stale retry")
    running = ledger.get(tid)
    assert running is not None and (running.state, running.lease_owner, running.error) == ("transferring", "w2", None)

    assert ledger.finish(tid, live.token, "archived", bytes=7, sha256="ab", error="")
    assert not ledger.finish(tid, stale.token, "queued", retry_in_ms=1_000, error="stale retry")
    assert not ledger.finish(tid, stale.token, "failed", error="stale failure")
    done = ledger.get(tid)
    assert done is not None and (done.state, done.bytes, done.sha256, done.error) == ("archived", 7, "ab", None)


def test_a_worker_whose_clock_runs_fast_neither_steals_a_live_lease_nor_drops_others_slots(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = record(ledger, a_file("rec_default_x_1.mp4"), "slow")
    waiting = record(ledger, a_file("rec_default_x_2.mp4"), "slow")
    assert ledger.claim(held, "w1", 60_000, limits={"slow": 1}).claimed  # a worker with a right clock
    real_ns, real = time.time_ns, time.time
    monkeypatch.setattr(time, "time_ns", lambda: real_ns() + SKEW_NS)
    monkeypatch.setattr(time, "time", lambda: real() + SKEW_NS / 1e9)
    assert ledger.claim(held, "w2", 60_000, limits={"slow": 1}).status == "busy", "a live lease stolen"
    assert ledger.claim(waiting, "w2", 60_000, limits={"slow": 1}).status == "storage_busy", (
        "max_concurrency exceeded: the fast worker dropped w1's slot")
    assert ledger.redis.zcard("archiver:running:slow") == 1
    assert held not in ledger.take_due(60_000), "a fast scheduler re-sends a running transfer"


def test_a_worker_whose_clock_runs_slow_writes_a_live_lease(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    real_ns, real = time.time_ns, time.time
    monkeypatch.setattr(time, "time_ns", lambda: real_ns() - SKEW_NS)
    monkeypatch.setattr(time, "time", lambda: real() - SKEW_NS / 1e9)
    tid = record(ledger, a_file(), "slow")  # recorded by the slow process too: due for it
    assert ledger.claim(tid, "slow-clock", 60_000, limits={"slow": 1}).claimed
    monkeypatch.undo()
    assert ledger.claim(tid, "w2", 60_000, limits={"slow": 1}).status == "busy", "the lease was written expired"
    transfer = ledger.get(tid)
    assert transfer is not None and transfer.lease_until is not None
    assert transfer.lease_until.timestamp() > time.time() + 50
    assert ledger.take_due(60_000) == [], "due while its lease runs"


def test_what_an_attempt_commits_is_noted_only_with_its_live_claim(ledger: Ledger) -> None:
    """note_commit (just before a create-only commit) needs the claim's token: a worker taken over
    notes nothing, and the live one's note stays after it fails, for its next attempt to recognise."""
    tid = record(ledger, a_file())
    stale = ledger.claim(tid, "w1", 60_000)
    ledger.redis.hset(f"{ledger.prefix}transfer:{tid}", "lease_until", 0)  # as if it ran out
    live = ledger.claim(tid, "w2", 60_000)
    assert live.claimed and not ledger.note_commit(tid, stale.token, 9, "stale")
    got = ledger.get(tid)
    assert got is not None and got.noted_commit is None
    assert ledger.note_commit(tid, live.token, 7, "ab")
    assert ledger.finish(tid, live.token, "queued", retry_in_ms=0, error="read-back failed")
    queued = ledger.get(tid)
    assert queued is not None and queued.noted_commit == (7, "ab") and not queued.replaces
    assert not ledger.note_commit(tid, live.token, 8, "cd")  # not transferring any more
