"""Delete after archive (worker/discovery/deletion.py): only files verified at every destination."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.fakestream.models import StoredFile
from tests.fakestream.server import FakeStream
from worker.discovery.deletion import delete_archived
from worker.intake.record import record_routes
from worker.intake.webhook import ready_file
from worker.runtime import Runtime
from worker.transfer.run import run_transfer


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime]) -> Runtime:
    return make_runtime("a", "b", call_types={"both": ["a", "b"], "kept": "stream-s3"}, call_storage_key="")


def archive(runtime: Runtime, fake: FakeStream, file: StoredFile, *, legacy: bool = False) -> list[str]:
    stream_file = ready_file(fake.event_for(file, legacy=legacy))
    assert stream_file is not None
    recorded = record_routes(runtime.archive, runtime.ledger, stream_file)
    for tid in recorded.to_queue:
        run_transfer(runtime, tid)
    return recorded.transfer_ids


def listed(fake: FakeStream, file: StoredFile) -> bool:
    return any(f.filename == file.filename for f in fake.files(file.call_cid, file.kind))


def test_only_files_verified_everywhere_are_deleted(runtime: Runtime, fake: FakeStream) -> None:
    done = fake.add_recording("default:done", b"x" * 100)
    archive(runtime, fake, done)
    fan_out = fake.add_recording("both:fan", b"y" * 100)
    fake.fail_next(fan_out.filename, 500)  # the first destination's attempt fails and backs off
    archive(runtime, fake, fan_out)
    kept = fake.add_recording("kept:stream", b"z" * 10)
    archive(runtime, fake, kept)

    preview = delete_archived(runtime, dry_run=True)
    assert [c.filename for c in preview.candidates] == [done.filename]
    assert listed(fake, done)

    summary = delete_archived(runtime, dry_run=False)
    assert summary.deleted == 1 and summary.failed == 0
    assert not listed(fake, done) and listed(fake, fan_out) and listed(fake, kept)
    done_file = ready_file(fake.event_for(done))
    assert done_file is not None
    assert runtime.ledger.file(done_file.file_id)["deleted_from_stream"] == "deleted"
    assert delete_archived(runtime, dry_run=False).candidates == []


def test_an_archived_frame_recording_is_not_deleted_stream_has_no_endpoint_for_it(
        make_runtime: Callable[..., Runtime], fake: FakeStream) -> None:
    runtime = make_runtime("a", kinds=["frame_recording"], call_storage_key="")
    frame = fake.add_frame_recording("default:frames", b"jpeg")
    (tid,) = archive(runtime, fake, frame)
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and transfer.state == "archived"
    assert delete_archived(runtime, dry_run=False).candidates == []


def test_a_legacy_record_finds_its_session_through_the_listing(runtime: Runtime, fake: FakeStream) -> None:
    old = fake.add_recording("default:legacy", b"x" * 10)
    archive(runtime, fake, old, legacy=True)
    (candidate,) = delete_archived(runtime, dry_run=True).candidates
    assert candidate.session_id is None
    assert delete_archived(runtime, dry_run=False).deleted == 1
    assert not listed(fake, old)


@pytest.mark.parametrize("status", [404, 400])
def test_a_file_stream_already_dropped_is_recorded_as_gone(runtime: Runtime, fake: FakeStream, status: int) -> None:
    """Stream's "does not exist" (code 16) as 404 or as 400: already gone either way."""
    fake.missing_status = status
    gone = fake.add_recording("default:gone", b"x" * 10)
    archive(runtime, fake, gone)
    fake.delete_file(gone)
    summary = delete_archived(runtime, dry_run=False)
    assert (summary.deleted, summary.already_gone) == (0, 1)
    assert delete_archived(runtime, dry_run=True).candidates == []


def test_an_object_overwritten_since_it_was_archived_is_not_deleted_but_archived_again(
        runtime: Runtime, fake: FakeStream, tmp_path: Path) -> None:
    """Before deleting, each object must still be the bytes archived (hashed again on local disk): an
    object rewritten meanwhile (same size, its xattr intact) keeps the file at Stream, logs
    stream_delete_skipped with the reason, and queues the transfer again, which archives it anew."""
    kept = fake.add_recording("default:rewritten", b"x" * 100)
    (tid,) = archive(runtime, fake, kept)
    transfer = runtime.ledger.get(tid)
    assert transfer is not None
    (tmp_path / "a" / transfer.key).write_bytes(b"y" * 100)  # another file's bytes, same size
    with capture_logs() as logs:
        summary = delete_archived(runtime, dry_run=False)
    assert (summary.deleted, summary.skipped) == (0, 1) and listed(fake, kept)
    (skipped,) = [e for e in logs if e["event"] == "stream_delete_skipped"]
    assert "sha256" in skipped["reason"] and skipped["requeued"] is True
    again = runtime.ledger.get(tid)
    assert again is not None and (again.state, again.reason) == ("queued", "object_changed")
    assert run_transfer(runtime, tid) == "archived"
    assert (tmp_path / "a" / transfer.key).read_bytes() == b"x" * 100
    assert delete_archived(runtime, dry_run=False).deleted == 1 and not listed(fake, kept)


def test_a_missing_object_keeps_the_whole_file_at_stream(runtime: Runtime, fake: FakeStream, tmp_path: Path) -> None:
    """A file archived to two storages, one of whose objects is gone: nothing is deleted from Stream,
    and only that transfer is queued again."""
    both = fake.add_recording("both:missing", b"z" * 10)
    tids = archive(runtime, fake, both)
    transfers = {t.storage: t for tid in tids if (t := runtime.ledger.get(tid))}
    assert {t.state for t in transfers.values()} == {"archived"}
    (tmp_path / "b" / transfers["b"].key).unlink()
    summary = delete_archived(runtime, dry_run=False)
    assert (summary.deleted, summary.skipped) == (0, 1) and listed(fake, both)
    states = {t.storage: t.state for tid in tids if (t := runtime.ledger.get(tid))}
    assert states == {"a": "archived", "b": "queued"}
