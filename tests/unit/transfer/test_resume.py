"""Resuming an upload across attempts (worker/transfer/resume.py), in-process: real Redis, local disk, the
fake Stream's CDN. An attempt cut short after a checkpoint leaves its temporary file and the ledger's
record; the next attempt re-reads the prefix from the source and writes only the rest."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fakestream.models import StoredFile
from tests.fakestream.server import FakeStream
from tests.unit.transfer.test_transfer import record
from worker.runtime import Runtime
from worker.storage.base import UploadState
from worker.storage.local.writer import LocalWriter
from worker.transfer.run import run_transfer

MiB = 1024 * 1024
SIZE, CHECKPOINT = 24 * MiB, 5 * MiB


@pytest.fixture(params=[1, 4], ids=["one_stream", "four_streams"])
def runtime(request: pytest.FixtureRequest, make_runtime: Callable[..., Runtime], tmp_path: Path) -> Runtime:
    disk = {"name": "disk", "storage_type": "local", "bucket": str(tmp_path / "archive")}
    return make_runtime(disk, transfer={"part_size": "5MiB", "resume_checkpoint": "5MiB",
                                        "parallel_download_threshold": "5MiB", "download_streams": request.param,
                                        "parallel_download_max_rate": "1TiB"})


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The bytes each `LocalWriter.write` of a recording was given (the real writer still writes them;
    the session's manifest is not counted)."""
    sizes: list[int] = []
    real = LocalWriter.write

    def counted(self: LocalWriter, data: bytes) -> None:
        if self._key.endswith(".mp4"):
            sizes.append(len(data))
        real(self, data)

    monkeypatch.setattr(LocalWriter, "write", counted)
    yield sizes


def cut_after_two_checkpoints(runtime: Runtime, fake: FakeStream, file: StoredFile) -> None:
    """Every GET of the bytes from 10 MiB (or 13 MiB, over one stream) on is cut, until the attempt's
    recoveries are spent: two checkpoints (5 and 10 MiB) are recorded, the attempt is queued again."""
    if runtime.archive.transfer.download_streams == 1:
        fake.truncate_next(file.filename, 13 * MiB)
        fake.truncate_next(file.filename, 0, count=5, range_from=13 * MiB)
    else:
        fake.truncate_next(file.filename, 0, count=6, range_from=10 * MiB)


def first_attempt(runtime: Runtime, fake: FakeStream, file: StoredFile) -> tuple[str, UploadState, Path]:
    """The first attempt, cut short: the transfer id, the ledger's record, the temporary file kept."""
    tid = record(runtime, fake, file)
    cut_after_two_checkpoints(runtime, fake, file)
    assert run_transfer(runtime, tid) == "retry"
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and transfer.state == "queued" and transfer.upload is not None
    state = UploadState.from_json(transfer.upload)
    assert state.offset == 2 * CHECKPOINT and [p.size for p in state.pieces] == [CHECKPOINT, CHECKPOINT]
    directory = (Path(runtime.storage("disk").describe()) / transfer.key).parent
    temp = directory / state.handle["temp"]
    assert temp.stat().st_size >= state.offset
    runtime.ledger.redis.hset(runtime.ledger.keys.transfer(tid), "next_attempt_at", 0)  # due now
    return tid, state, temp


def test_an_interrupted_upload_is_resumed_and_only_the_rest_is_written(
    runtime: Runtime, fake: FakeStream, tmp_path: Path, written: list[int],
) -> None:
    """The second attempt goes on with the first one's temporary file (same inode), writes only the bytes
    after the recorded offset, and archives the file byte-identical with the right SHA-256; the record
    is gone with the archived state."""
    content = os.urandom(SIZE)
    file = fake.add_recording("default:resume", content)
    tid, state, temp = first_attempt(runtime, fake, file)
    inode = temp.stat().st_ino
    written.clear()
    requests = len(fake.cdn_requests)

    assert run_transfer(runtime, tid) == "archived"
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and transfer.upload is None
    assert (transfer.bytes, transfer.sha256) == (SIZE, hashlib.sha256(content).hexdigest())
    final = tmp_path / "archive" / transfer.key
    assert final.read_bytes() == content and final.stat().st_ino == inode and not temp.exists()
    assert sum(written) == SIZE - state.offset
    ranges = [headers.get("range") for _, _, headers in fake.cdn_requests[requests:]]
    assert ranges[0] is None  # the prefix is read again from the source, from byte 0 (not written)


def test_a_source_that_changed_under_the_recorded_pieces_is_uploaded_afresh(
    runtime: Runtime, fake: FakeStream, tmp_path: Path, written: list[int],
) -> None:
    """Bytes below the recorded offset that no longer match a piece's CRC32C: the resumed upload is aborted
    and the file written whole, from the source as it is now."""
    source = tmp_path / "source.mp4"
    source.write_bytes(os.urandom(SIZE))
    file = fake.add_recording("default:changed", source)
    tid, _, temp = first_attempt(runtime, fake, file)
    changed = os.urandom(SIZE)
    source.write_bytes(changed)
    written.clear()

    assert run_transfer(runtime, tid) == "archived"
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and transfer.sha256 == hashlib.sha256(changed).hexdigest()
    assert (tmp_path / "archive" / transfer.key).read_bytes() == changed and not temp.exists()
    assert sum(written) == SIZE


def test_a_record_whose_temporary_file_is_gone_starts_afresh(
    runtime: Runtime, fake: FakeStream, tmp_path: Path,
) -> None:
    """The store no longer holds the recorded upload: a fresh writer, the whole file archived."""
    content = os.urandom(SIZE)
    file = fake.add_recording("default:gone-temp", content)
    tid, _, temp = first_attempt(runtime, fake, file)
    temp.unlink()
    assert run_transfer(runtime, tid) == "archived"
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and transfer.sha256 == hashlib.sha256(content).hexdigest()
    assert (tmp_path / "archive" / transfer.key).read_bytes() == content
