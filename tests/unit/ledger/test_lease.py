"""The lease heartbeat (worker/ledger/lease.py) against a real redis-server: renewed while the transfer moves,
left to run out once it stalls, so that no time limit is needed to catch a hung transfer."""

from __future__ import annotations

import time

import pytest

from tests.unit.ledger.test_ledger import a_file, record
from worker.errors import LeaseLost
from worker.ledger.lease import Heartbeat
from worker.ledger.store import Ledger

LEASE_MS, STALL_MS = 300, 600


def test_a_transfer_that_keeps_moving_keeps_its_lease_past_the_stall_window(ledger: Ledger) -> None:
    tid = record(ledger, a_file())
    claim = ledger.claim(tid, "w1", LEASE_MS)
    with Heartbeat(ledger, tid, claim.token, LEASE_MS, stall_ms=STALL_MS) as lease:
        for _ in range(15):  # 1.5 s: several stall windows and leases
            time.sleep(0.1)
            lease.progress()
            lease.check()
        assert ledger.claim(tid, "w2", 60_000).status == "busy"


def test_a_stalled_transfer_stops_renewing_and_is_taken_over(ledger: Ledger) -> None:
    tid = record(ledger, a_file())
    claim = ledger.claim(tid, "w1", LEASE_MS)
    with Heartbeat(ledger, tid, claim.token, LEASE_MS, stall_ms=STALL_MS) as lease:
        time.sleep(0.4)
        lease.check()  # not stalled yet: renewed
        assert ledger.claim(tid, "w2", 60_000).status == "busy"
        time.sleep(STALL_MS / 1000 + LEASE_MS / 1000 + 0.2)  # no byte moved: the lease runs out
        with pytest.raises(LeaseLost, match="stalled"):
            lease.check()
        taken = ledger.claim(tid, "w2", 60_000)
        assert taken.claimed and taken.epoch == 2
    assert not ledger.finish(tid, claim.token, "archived", bytes=1), "the stalled copy is fenced out"


def test_a_long_call_bounded_by_its_own_timeouts_is_not_a_stall(ledger: Ledger) -> None:
    tid = record(ledger, a_file())
    claim = ledger.claim(tid, "w1", LEASE_MS)
    with Heartbeat(ledger, tid, claim.token, LEASE_MS, stall_ms=STALL_MS) as lease:
        with lease.unwatched():
            time.sleep(STALL_MS / 1000 * 2)
        lease.check()
        assert ledger.claim(tid, "w2", 60_000).status == "busy"
