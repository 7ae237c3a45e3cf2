"""Every audited change leaves exactly one entry, written by the script that makes the change (or, for
Python's own changes, by `note`): an archive through the real transfer path, an operator's retry, a
re-queue of a changed object, a prune, a deletion from Stream. Backoff retries leave none."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fakestream.models import StoredFile
from tests.fakestream.server import FakeStream
from tests.support.ledger_states import add
from worker.auditlog import note
from worker.discovery.deletion import delete_archived
from worker.intake.record import record_routes
from worker.intake.webhook import ready_file
from worker.ledger.prune import prune_archived
from worker.ledger.store import Ledger
from worker.runtime import Runtime
from worker.transfer.run import run_transfer


def pending(ledger: Ledger, *actions: str) -> list[dict[str, Any]]:
    """The entries queued (only those of `actions`, when given), oldest first."""
    entries = [json.loads(raw) for raw in ledger.redis.lrange(ledger.keys.auditlog_pending, 0, -1)]
    return [e for e in entries if not actions or e["action"] in actions]


def record(runtime: Runtime, fake: FakeStream, file: StoredFile) -> str:
    stream_file = ready_file(fake.event_for(file))
    assert stream_file is not None
    (tid,) = record_routes(runtime.archive, runtime.ledger, stream_file).transfer_ids
    return tid


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime], tmp_path: Path) -> Runtime:
    disk = {"name": "disk", "storage_type": "local", "bucket": str(tmp_path / "archive")}
    return make_runtime(disk, retry_backoff="10s", call_storage_key="")


def test_an_archive_through_the_transfer_path_leaves_one_entry_with_its_subject(runtime: Runtime,
                                                                                 fake: FakeStream) -> None:
    file = fake.add_recording("default:kept", b"abc" * 1000)
    tid = record(runtime, fake, file)
    assert pending(runtime.ledger) == []  # intake is not audited
    assert run_transfer(runtime, tid) == "archived"
    assert run_transfer(runtime, tid) == "archived"  # a second run changes nothing, notes nothing
    transfer = runtime.ledger.get(tid)
    assert transfer is not None
    (entry,) = pending(runtime.ledger)
    assert entry == {"action": "archive", "at": entry["at"], "actor": "worker", "transfer_id": tid,
                     "file_id": transfer.file_id, "call_cid": "default:kept", "session_id": transfer.session_id,
                     "kind": "recording", "storage": "disk", "key": transfer.key, "bytes": file.size,
                     "sha256": file.sha256}
    assert isinstance(entry["at"], int) and abs(entry["at"] - runtime.ledger.now_ms()) < 60_000


def test_a_backoff_retry_and_a_permanent_failure_leave_none(runtime: Runtime, fake: FakeStream) -> None:
    file = fake.add_recording("default:flaky", b"x" * 100)
    tid = record(runtime, fake, file)
    fake.fail_next(file.filename, 500)
    assert run_transfer(runtime, tid) == "retry"
    assert pending(runtime.ledger) == []
    ledger = runtime.ledger
    add(ledger, "refused", "failed")
    assert pending(ledger) == []
    (other,) = add(ledger, "fenced")
    claim = ledger.claim(other, "w", 60_000)
    assert not ledger.finish(other, "not-the-token", "archived", bytes=1, sha256="00")  # fenced out: no entry
    assert ledger.finish(other, claim.token, "queued", retry_in_ms=0)
    assert pending(ledger) == []


def test_an_operators_retry_says_what_the_transfer_was_and_why(ledger: Ledger) -> None:
    ledger.actor = "cli"
    (tid,) = add(ledger, "refused", "failed", reason="key_taken")
    (queued,) = add(ledger, "waiting")
    assert ledger.retry(tid) and not ledger.retry(queued) and not ledger.retry(tid)
    (entry,) = pending(ledger)
    assert entry["action"] == "retry" and entry["transfer_id"] == tid and entry["actor"] == "cli"
    assert (entry["previous_state"], entry["reason"], entry["error"]) == ("failed", "key_taken", "refused")
    assert entry["key"] == "default/refused/rec_refused.mp4" and entry["storage"] == "disk"


def test_a_changed_object_queued_again_is_a_retry_with_reason_object_changed(ledger: Ledger) -> None:
    (tid,) = add(ledger, "changed", "archived")
    assert ledger.requeue_archived(tid, "disk: default/changed/rec_changed.mp4 is missing")
    assert not ledger.requeue_archived(tid, "again")  # not archived any more: nothing noted
    assert [e["action"] for e in pending(ledger)] == ["archive", "retry"]
    (entry,) = pending(ledger, "retry")
    assert (entry["action"], entry["previous_state"], entry["reason"]) == ("retry", "archived", "object_changed")
    assert entry["error"] == "disk: default/changed/rec_changed.mp4 is missing"
    assert (entry["bytes"], entry["sha256"]) == (1234, "ab" * 32)


def test_each_transfer_pruned_leaves_an_entry_and_a_dry_run_none(ledger: Ledger) -> None:
    ledger.actor = "cli"
    both = add(ledger, "old", "archived", storages=("disk", "s3"), days_ago=100)
    add(ledger, "recent", "archived", days_ago=1)
    assert prune_archived(ledger, timedelta(days=90), dry_run=True).transfers == 2
    assert pending(ledger, "prune") == []
    assert prune_archived(ledger, timedelta(days=90)).transfers == 2
    entries = pending(ledger, "prune")
    assert sorted(e["transfer_id"] for e in entries) == sorted(both)
    assert all(e["action"] == "prune" and e["actor"] == "cli" and e["sha256"] == "ab" * 32 for e in entries)
    assert sorted(e["file_forgotten"] for e in entries) == [False, True]  # the file went with the last one


def test_a_deletion_from_stream_leaves_one_entry_naming_the_file(runtime: Runtime, fake: FakeStream) -> None:
    file = fake.add_recording("default:gone", b"y" * 100)
    tid = record(runtime, fake, file)
    assert run_transfer(runtime, tid) == "archived"
    runtime.ledger.redis.delete(runtime.ledger.keys.auditlog_pending)
    assert delete_archived(runtime, dry_run=False).deleted == 1
    transfer = runtime.ledger.get(tid)
    assert transfer is not None
    (entry,) = pending(runtime.ledger)
    assert entry == {"action": "delete_from_stream", "at": entry["at"], "actor": "worker",
                     "file_id": transfer.file_id, "call_cid": "default:gone", "session_id": transfer.session_id,
                     "kind": "recording", "filename": file.filename, "outcome": "deleted"}
    assert runtime.ledger.file(transfer.file_id)["deleted_from_stream"] == "deleted"


def test_a_deletion_noted_for_a_file_pruned_meanwhile_does_not_make_its_record_again(ledger: Ledger) -> None:
    ledger.mark_deleted_from_stream("gone-file", "already gone")
    assert ledger.file("gone-file") == {}
    (entry,) = pending(ledger)
    assert (entry["file_id"], entry["outcome"]) == ("gone-file", "already gone")


def test_note_refuses_fields_the_log_sets_and_values_it_cannot_keep(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="seq"):
        note(ledger, "hold", seq=3)
    with pytest.raises(TypeError, match="only strings"):
        note(ledger, "hold", ratio=0.5)  # type: ignore[arg-type]
    note(ledger, "erase", call_cid="default:a", actor="cli", dry_run=False)
    (entry,) = pending(ledger)
    assert entry["actor"] == "cli" and entry["dry_run"] is False
