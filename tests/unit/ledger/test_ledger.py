"""The Redis ledger's atomic steps (worker/ledger/store.py), against a real redis-server."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import redis

from worker.clock import to_ms
from worker.files import StreamFile, transfer_id
from worker.intake.resolve import stored_file
from worker.ledger.models import NewTransfer
from worker.ledger.store import Ledger

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def a_file(filename: str = "rec_default_x_1.mp4", url: str = "https://cdn/x?sig=1",
           session_id: str | None = "s1") -> StreamFile:
    return StreamFile(call_cid="default:x", kind="recording", filename=filename, url=url,
                      start_time=END - timedelta(minutes=5), end_time=END, session_id=session_id)


def record(ledger: Ledger, file: StreamFile, storage: str = "local", dispatch_in_ms: int = 0) -> str:
    tid = transfer_id(file.file_id, storage)
    ledger.record(file, [NewTransfer(tid, storage, f"default/x/{file.filename}")],
                  expires_at=END + timedelta(days=14), dispatch_in_ms=dispatch_in_ms)
    return tid


def test_recording_a_file_creates_a_queued_transfer_with_its_deadline(ledger: Ledger) -> None:
    tid = record(ledger, a_file())
    transfer = ledger.get(tid)
    assert transfer is not None
    assert (transfer.state, transfer.attempts, transfer.storage) == ("queued", 0, "local")
    assert transfer.expires_at == END + timedelta(days=14)
    assert ledger.ids("queued") == [tid]
    assert ledger.redis.zscore("archiver:expiry", tid) is not None


def test_recording_again_changes_nothing_but_reports_it_known(ledger: Ledger) -> None:
    file = a_file()
    tid = transfer_id(file.file_id, "local")
    first = ledger.record(file, [NewTransfer(tid, "local", "k")], expires_at=END)
    again = ledger.record(file, [NewTransfer(tid, "local", "k")], expires_at=END)
    assert (first.file_is_new, first.transfers_created) == (True, 1)
    assert (again.file_is_new, again.transfers_created) == (False, 0)
    assert ledger.ids() == [tid]


def test_concurrent_deliveries_of_one_file_give_one_transfer(ledger: Ledger, redis_url: str) -> None:
    file = a_file()

    def deliver(_: int) -> bool:
        client = Ledger(redis.Redis.from_url(redis_url, decode_responses=True))
        return client.record(file, [NewTransfer(transfer_id(file.file_id, "local"), "local", "k")],
                             expires_at=END).file_is_new

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(deliver, range(40)))
    assert outcomes.count(True) == 1
    assert len(ledger.ids()) == 1


def test_a_later_delivery_fills_in_a_missing_session_id_and_a_fresh_url(ledger: Ledger) -> None:
    legacy = a_file(session_id=None)
    record(ledger, legacy)
    record(ledger, a_file(session_id="s9", url="https://cdn/x?sig=2"))
    stored = ledger.file(legacy.file_id)
    assert (stored["session_id"], stored["url"]) == ("s9", "https://cdn/x?sig=2")


def test_claim_takes_a_lease_with_a_fresh_token_and_bumps_the_epoch(ledger: Ledger) -> None:
    tid = record(ledger, a_file())
    first = ledger.claim(tid, "w1", 60_000)
    assert (first.status, first.epoch) == ("claimed", 1) and len(first.token) == 32
    busy = ledger.claim(tid, "w2", 60_000)
    assert (busy.status, busy.token) == ("busy", "")
    transfer = ledger.get(tid)
    assert transfer is not None and (transfer.state, transfer.attempts, transfer.lease_owner) == (
        "transferring", 1, "w1")
    assert transfer.raw["lease_token"] == first.token


def test_an_expired_lease_can_be_taken_over_and_fences_out_the_old_worker(ledger: Ledger) -> None:
    tid = record(ledger, a_file())
    old = ledger.claim(tid, "w1", 100)
    assert old.claimed
    time.sleep(0.15)  # by Redis's clock: the lease ran out
    new = ledger.claim(tid, "w2", 60_000)
    assert new.claimed and new.epoch == old.epoch + 1 and new.token != old.token
    assert not ledger.heartbeat(tid, old.token, 60_000)
    assert not ledger.finish(tid, old.token, "archived", bytes=1)
    assert ledger.finish(tid, new.token, "archived", bytes=7, sha256="ab")
    transfer = ledger.get(tid)
    assert transfer is not None and (transfer.state, transfer.bytes, transfer.attempts) == ("archived", 7, 2)
    assert "lease_token" not in transfer.raw and transfer.lease_until is None


def test_a_backed_off_transfer_is_not_claimed_before_its_time(ledger: Ledger) -> None:
    tid = record(ledger, a_file())
    claim = ledger.claim(tid, "w1", 60_000)
    before = ledger.now_ms()
    assert ledger.finish(tid, claim.token, "queued", retry_in_ms=300, error="boom")
    transfer = ledger.get(tid)
    assert transfer is not None and transfer.next_attempt_at is not None
    due = ledger.redis.zscore(ledger.keys.due, tid)
    assert due is not None and before + 300 <= due <= ledger.now_ms() + 300
    assert to_ms(transfer.next_attempt_at) == due, "next_attempt_at and due: one time, by Redis's clock"
    assert ledger.claim(tid, "w1", 60_000).status == "not_due"
    time.sleep(0.35)
    assert ledger.claim(tid, "w1", 60_000).claimed


def test_finished_transfers_leave_the_due_and_expiry_indexes(ledger: Ledger) -> None:
    tid = record(ledger, a_file())
    claim = ledger.claim(tid, "w", 60_000)
    ledger.finish(tid, claim.token, "archived", bytes=1)
    assert ledger.redis.zscore("archiver:due", tid) is None
    assert ledger.redis.zscore("archiver:expiry", tid) is None
    assert ledger.ids("archived") == [tid] and ledger.ids("transferring") == []
    assert ledger.claim(tid, "w", 60_000).status == "archived"


def test_take_due_returns_due_transfers_once_per_redispatch_period(ledger: Ledger) -> None:
    due = record(ledger, a_file("a.mp4"), dispatch_in_ms=-1)
    record(ledger, a_file("b.mp4"), dispatch_in_ms=60_000)
    assert ledger.take_due(300) == [due]
    assert ledger.take_due(300) == []
    time.sleep(0.35)
    assert ledger.take_due(300) == [due]


def test_a_running_transfer_becomes_due_when_its_lease_runs_out(ledger: Ledger) -> None:
    tid = record(ledger, a_file(), dispatch_in_ms=600_000)
    ledger.claim(tid, "w", 200)
    assert ledger.take_due(60_000) == []
    time.sleep(0.25)
    assert ledger.take_due(60_000) == [tid]


def test_only_one_scheduler_holds_the_lock(ledger: Ledger) -> None:
    assert ledger.acquire_lock("a", 10_000)
    assert not ledger.acquire_lock("b", 10_000)
    assert ledger.acquire_lock("a", 10_000)
    ledger.release_lock("b")
    assert not ledger.acquire_lock("b", 10_000)
    ledger.release_lock("a")
    assert ledger.acquire_lock("b", 10_000)


def test_json_shape_has_the_public_fields_in_rfc3339(ledger: Ledger) -> None:
    tid = record(ledger, a_file())
    transfer = ledger.get(tid)
    assert transfer is not None
    shape = transfer.to_json()
    for field in ("id", "call_cid", "session_id", "kind", "filename", "storage", "key", "state", "bytes",
                  "sha256", "attempts", "error", "expires_at"):
        assert field in shape
    assert shape["expires_at"] == "2026-12-04T12:00:00.000Z"


# -- the URL of the newest event; files past their deadline --------------------------------------------------

def url_of(ledger: Ledger, file: StreamFile) -> str:
    return ledger.file(file.file_id)["url"]


def test_the_file_keeps_the_url_of_its_newest_event(ledger: Ledger) -> None:
    now = datetime.now(UTC)
    newer = replace(a_file(url="https://cdn/x?sig=newer"), url_at=now - timedelta(minutes=1))
    older = replace(a_file(url="https://cdn/x?sig=older"), url_at=now - timedelta(minutes=5))
    record(ledger, newer)
    record(ledger, older)
    assert url_of(ledger, newer) == "https://cdn/x?sig=newer"
    assert int(ledger.file(newer.file_id)["url_at"]) == round((now - timedelta(minutes=1)).timestamp() * 1000)
    listed = replace(a_file(url="https://cdn/x?sig=listed"), url_at=None)  # just signed by Stream's API
    record(ledger, listed)
    assert url_of(ledger, listed) == "https://cdn/x?sig=listed"
    record(ledger, replace(older, url_at=now))  # an event made at the listing's time is not newer
    assert url_of(ledger, listed) == "https://cdn/x?sig=listed"


def test_a_file_recorded_again_from_its_own_record_keeps_its_url_time(ledger: Ledger) -> None:
    """Routing a waiting file records it again from its ledger record (`stored_file`): that must not
    make its URL look newer than the events that may still come."""
    first = replace(a_file(url="https://cdn/x?sig=first"), url_at=datetime.now(UTC) - timedelta(minutes=5))
    record(ledger, first)
    before = ledger.file(first.file_id)["url_at"]
    record(ledger, stored_file(ledger.file(first.file_id)), storage="other")
    assert ledger.file(first.file_id)["url_at"] == before
    later = replace(a_file(url="https://cdn/x?sig=later"), url_at=datetime.now(UTC) - timedelta(minutes=1))
    record(ledger, later)
    assert url_of(ledger, later) == "https://cdn/x?sig=later"


def test_a_record_without_a_url_time_takes_the_next_url(ledger: Ledger) -> None:
    """Files recorded before URL times were kept: the next URL is stored, with its time."""
    file = a_file(url="https://cdn/x?sig=old-record")
    record(ledger, file)
    ledger.redis.hdel(f"archiver:file:{file.file_id}", "url_at")
    record(ledger, replace(a_file(url="https://cdn/x?sig=event"), url_at=datetime.now(UTC) - timedelta(days=1)))
    assert url_of(ledger, file) == "https://cdn/x?sig=event" and ledger.file(file.file_id)["url_at"]


def test_refuse_expired_writes_nothing_for_a_file_past_its_deadline(ledger: Ledger) -> None:
    file = a_file()
    tid = transfer_id(file.file_id, "local")
    past = datetime.fromtimestamp(ledger.now_ms() / 1000 - 1, UTC)
    gone = ledger.record(file, [NewTransfer(tid, "local", "k")], expires_at=past, refuse_expired=True)
    assert gone.expired and not gone.file_is_new and ledger.redis.keys("archiver:*") == []
    kept = ledger.record(file, [NewTransfer(tid, "local", "k")], expires_at=past + timedelta(seconds=60),
                         refuse_expired=True)
    assert (kept.expired, kept.file_is_new, kept.transfers_created) == (False, True, 1)
    again = ledger.record(file, [NewTransfer(tid, "local", "k")], expires_at=past, refuse_expired=True)
    assert again.expired and ledger.get(tid) is not None  # a known file: refused, left as it is
    assert ledger.record(file, [], expires_at=past).expired is False  # listings and routing: not refused
