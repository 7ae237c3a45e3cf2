"""The audit's verdicts (worker/audit/run.py, judge.py): a real Redis, the fake Stream, real local storages."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from structlog.testing import capture_logs

from tests.fakestream.server import FakeStream
from tests.support.ledger_states import add, add_waiting
from tests.unit.audit.conftest import NOW, archive, run, seed, stream_file, verdicts
from worker.audit.last import read_last
from worker.audit.model import PROBLEMS, VERDICTS
from worker.files import transfer_id
from worker.intake.record import record_file, record_routes
from worker.ledger.models import NewTransfer
from worker.runtime import Runtime
from worker.transfer.run import run_transfer


def test_every_archived_file_is_ok_and_a_deep_audit_reads_each_object_back(runtime: Runtime, fake: FakeStream
                                                                           ) -> None:
    files = seed(fake)
    for f in files:
        archive(runtime, fake, f)
    result = run(runtime, deep=True)
    assert verdicts(result) == {(f.filename, s): "ok" for f in files for s in ("a", "b")}
    assert all(row.detail == "sha256 verified" for row in result.rows())
    c = result.summary.counts
    assert (c.calls_listed, c.files, c.objects, c.problems, c.requeued, c.recorded) == (3, 6, 12, 0, 0, 0)
    last = read_last(runtime.ledger.redis, runtime.ledger.prefix)
    assert last is not None and last.counts.verdicts["ok"] == 12 and last.problems == ()
    result.forget()
    assert not runtime.ledger.redis.keys("archiver:audit:run:*")


def test_a_deleted_object_is_missing_an_altered_one_a_mismatch_and_both_are_queued_again(
        runtime: Runtime, fake: FakeStream, root: Callable[[str], Path]) -> None:
    files = seed(fake)
    for f in files:
        archive(runtime, fake, f)
    gone, altered = files[0], files[3]
    (root("a") / "default" / "c0" / gone.filename).unlink()
    path = root("b") / "default" / "c1" / altered.filename
    path.write_bytes(bytes(b ^ 1 for b in path.read_bytes()))  # the same size: only reading it back tells

    shallow = run(runtime, name="shallow")
    assert {k: v for k, v in verdicts(shallow).items() if v != "ok"} == {(gone.filename, "a"): "missing"}
    shallow.forget()
    gone_id = transfer_id(stream_file(fake, gone).file_id, "a")
    assert state_of(runtime, gone_id) == "queued"
    run_transfer(runtime, gone_id)

    queued: list[str] = []
    deep = run(runtime, deep=True, name="deep", queued=queued)
    problems = {(r.filename, r.storage): (r.verdict, r.detail) for r in deep.problems()}
    assert problems.keys() == {(altered.filename, "b")}
    verdict, detail = problems[(altered.filename, "b")]
    assert verdict == "mismatch" and "read back" in detail and detail.endswith("queued again (Stream still holds "
                                                                               "the file)")
    changed = runtime.ledger.get(transfer_id(stream_file(fake, altered).file_id, "b"))
    assert changed is not None and (changed.state, changed.reason) == ("queued", "object_changed")
    assert queued == [changed.id]
    run_transfer(runtime, changed.id)
    assert path.read_bytes() == altered.read_bytes()
    assert run(runtime, deep=True, name="after").summary.problem_count == 0


def state_of(runtime: Runtime, tid: str) -> str:
    transfer = runtime.ledger.get(tid)
    assert transfer is not None
    return transfer.state


def test_a_size_change_is_a_mismatch_without_reading_the_object(runtime: Runtime, fake: FakeStream,
                                                               root: Callable[[str], Path]) -> None:
    (one,) = seed(fake, calls=1, files=1)
    archive(runtime, fake, one)
    (root("a") / "default" / "c0" / one.filename).write_bytes(b"short")
    result = run(runtime)
    (row,) = result.problems()
    assert (row.storage, row.verdict) == ("a", "mismatch") and "holds 5 bytes" in row.detail


def test_a_file_stream_lists_that_the_ledger_never_saw_is_recorded_queued_and_reported(
        runtime: Runtime, fake: FakeStream) -> None:
    (known, unseen) = seed(fake, calls=1, files=2)
    archive(runtime, fake, known)
    queued: list[str] = []
    with capture_logs() as logs:
        result = run(runtime, queued=queued)
    rows = [r for r in result.rows() if r.filename == unseen.filename]
    assert {(r.storage, r.verdict, r.detail) for r in rows} == {
        ("a", "unknown_to_ledger", "recorded now and queued"), ("b", "unknown_to_ledger", "recorded now and queued")}
    assert result.summary.counts.recorded == 1 and result.summary.problem_count == 2
    file = stream_file(fake, unseen)
    assert sorted(queued) == sorted(transfer_id(file.file_id, s) for s in ("a", "b"))
    assert [e["filename"] for e in logs if e["event"] == "audit_unknown_to_ledger"] == [unseen.filename]
    for tid in queued:
        run_transfer(runtime, tid)
    result.forget()
    assert run(runtime, name="again").summary.problem_count == 0


def test_files_not_archived_are_unarchived_or_at_risk_and_a_failure_is_in_the_detail(
        runtime: Runtime, fake: FakeStream) -> None:
    fresh = fake.add_recording("default:wait", b"x" * 10, end_time=NOW - timedelta(hours=1))
    soon = fake.add_recording("default:soon", b"y" * 10, end_time=NOW - timedelta(days=13))
    broken = fake.add_recording("default:broken", b"z" * 10, end_time=NOW - timedelta(hours=2))
    for stored in (fresh, soon):
        record_routes(runtime.archive, runtime.ledger, stream_file(fake, stored))
    record_routes(runtime.archive, runtime.ledger, stream_file(fake, broken))
    failed = transfer_id(stream_file(fake, broken).file_id, "a")
    claim = runtime.ledger.claim(failed, "test", 60_000)
    assert runtime.ledger.finish(failed, claim.token, "failed", error="AccessDenied: no permission")
    routed_later = fake.add_recording("default:later", b"w" * 10, end_time=NOW - timedelta(hours=3))
    record_file(runtime.archive.model_copy(update={"call_storage_key": "archive_storage"}), runtime.ledger,
                stream_file(fake, routed_later))

    rows = {(r.filename, r.storage): r for r in run(runtime).rows()}
    assert {k: r.verdict for k, r in rows.items()} == {
        (fresh.filename, "a"): "unarchived", (fresh.filename, "b"): "unarchived",
        (soon.filename, "a"): "at_risk", (soon.filename, "b"): "at_risk",
        (broken.filename, "a"): "unarchived", (broken.filename, "b"): "unarchived",
        (routed_later.filename, None): "unarchived"}
    assert rows[(broken.filename, "a")].detail.startswith("failed (attempt 1: AccessDenied: no permission); "
                                                          "Stream deletes it at ")
    assert rows[(soon.filename, "a")].detail.startswith("queued (attempt 0); Stream deletes it at ")
    assert rows[(routed_later.filename, None)].detail.startswith("waiting for its routes")
    assert rows[(routed_later.filename, None)].key is None


def test_files_older_than_streams_retention_are_compared_with_the_ledger_and_never_queued_again(
        runtime: Runtime, fake: FakeStream, root: Callable[[str], Path]) -> None:
    """Stream deleted these files: the ledger and the storages are still compared; a missing object
    cannot be archived again; a transfer that never finished is lost."""
    old = fake.add_recording("default:old", os.urandom(100), end_time=NOW - timedelta(days=20))
    archive(runtime, fake, old)
    fake.delete_file(old)
    (root("b") / "default" / "old" / old.filename).unlink()
    never = add(runtime.ledger, "never", storages=("a",), ended=NOW - timedelta(days=20))
    lost = add(runtime.ledger, "gone", "lost", storages=("a",), ended=NOW - timedelta(days=20))
    queued: list[str] = []
    rows = {(r.filename, r.storage): r for r in run(runtime, since=timedelta(days=1), queued=queued).rows()}
    assert {k: r.verdict for k, r in rows.items()} == {
        (old.filename, "a"): "ok", (old.filename, "b"): "missing", ("rec_never.mp4", "a"): "lost",
        ("rec_gone.mp4", "a"): "lost"}
    assert rows[(old.filename, "b")].detail.endswith("Stream no longer holds the file: it cannot be archived again")
    assert "Stream's deadline passed" in rows[("rec_never.mp4", "a")].detail
    assert queued == [] and state_of(runtime, transfer_id(stream_file(fake, old).file_id, "b")) == "archived"
    assert never and lost


def test_an_unfinished_transfer_whose_file_stream_stopped_listing_is_at_risk(runtime: Runtime, fake: FakeStream
                                                                            ) -> None:
    (one,) = seed(fake, calls=1, files=1)
    record_routes(runtime.archive, runtime.ledger, stream_file(fake, one))
    fake.delete_file(one)
    rows = list(run(runtime).rows())
    assert {r.verdict for r in rows} == {"at_risk"}
    assert all("Stream no longer lists the file" in r.detail for r in rows)


def test_a_storage_that_cannot_be_asked_leaves_its_objects_unchecked(runtime: Runtime, fake: FakeStream) -> None:
    (one,) = seed(fake, calls=1, files=1)
    file = stream_file(fake, one)
    tid = transfer_id(file.file_id, "retired")
    runtime.ledger.record(file, [NewTransfer(tid, "retired", "k/x.mp4")], expires_at=file.expires_at(timedelta(14)))
    claim = runtime.ledger.claim(tid, "test", 60_000)
    assert runtime.ledger.finish(tid, claim.token, "archived", bytes=3, sha256="ab" * 32)
    (row,) = run(runtime).rows()
    assert (row.storage, row.verdict) == ("retired", "unchecked") and "no storage named 'retired'" in row.detail


def test_exact_calls_audit_only_their_files_and_a_call_stream_lacks_holds_none(runtime: Runtime, fake: FakeStream,
                                                                                root: Callable[[str], Path]) -> None:
    files = seed(fake, calls=2, files=1)
    for f in files:
        archive(runtime, fake, f)
    ghost = add(runtime.ledger, "ghost", "archived", storages=("a",), ended=NOW - timedelta(days=1))
    result = run(runtime, calls=("default:c1", "default:ghost"))
    found = verdicts(result)
    assert found == {(files[1].filename, "a"): "ok", (files[1].filename, "b"): "ok", ("rec_ghost.mp4", "a"): "missing"}
    (row,) = result.problems()
    assert row.detail.endswith("Stream no longer holds the file: it cannot be archived again") and ghost
    assert read_last(runtime.ledger.redis, runtime.ledger.prefix) is None  # an audit of chosen calls is not "the last"
    assert not (root("a") / "default" / "ghost").exists()


def test_every_verdict_is_in_the_summary_and_problems_are_the_issues_list(runtime: Runtime, fake: FakeStream) -> None:
    add_waiting(runtime.ledger, "nowhere")
    summary = run(runtime).summary
    assert list(summary.counts.to_json()["verdicts"]) == list(VERDICTS)
    assert set(PROBLEMS) == {"missing", "mismatch", "lost", "unknown_to_ledger", "at_risk", "unchecked"}
