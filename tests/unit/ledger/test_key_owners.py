"""One key, one file (worker/intake/object_keys.py, the ledger's INTAKE script): two files never share an object,
through the real intake, ledger, transfer and local storage, with the fake Stream."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fakestream.models import StoredFile
from tests.fakestream.server import FakeStream
from tests.unit.ledger.test_ledger import END, a_file
from worker.files import transfer_id
from worker.intake.object_keys import key_of_another_owner
from worker.intake.record import record_routes
from worker.intake.webhook import ready_file
from worker.ledger.models import NewTransfer
from worker.ledger.store import Ledger
from worker.runtime import Runtime
from worker.transfer.run import run_transfer


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime]) -> Runtime:
    return make_runtime(call_storage_key="", key_template="{call_type}/{call_id}/{filename}")


def archive(runtime: Runtime, fake: FakeStream, file: StoredFile) -> str:
    """Record `file` from its ready event, run its transfer; return the key it was archived under."""
    stream_file = ready_file(fake.event_for(file))
    assert stream_file is not None
    (tid,) = record_routes(runtime.archive, runtime.ledger, stream_file).transfer_ids
    assert run_transfer(runtime, tid) == "archived"
    transfer = runtime.ledger.get(tid)
    assert transfer is not None
    return transfer.key


@pytest.mark.parametrize(("call_a", "name_a", "call_b", "name_b"), [
    ("default:c", "caf\u00e9.mp4", "default:c", "cafe\u0301.mp4"),
    ("default:c", "rec_a\\b.mp4", "default:c", "rec_a_b.mp4"),
    ("default:c", "rec.mp4", "default:c", " rec.mp4"),
    ("default:c", "%2e%2e", "default:c", "__2e_2e"),
    ("default:a/b", "rec.mp4", "default:a_b", "rec.mp4"),
])
def test_twins_are_two_objects(runtime: Runtime, fake: FakeStream, tmp_path: Path,
                               call_a: str, name_a: str, call_b: str, name_b: str) -> None:
    """Names that clean to the same text are archived as two objects, each with its own bytes."""
    first = fake.add_recording(call_a, b"first file", filename=name_a)
    second = fake.add_recording(call_b, b"second file", filename=name_b)
    keys = archive(runtime, fake, first), archive(runtime, fake, second)
    assert keys[0] != keys[1]
    assert [(tmp_path / "disk" / key).read_bytes() for key in keys] == [b"first file", b"second file"]


def test_a_template_merging_two_files_gives_the_second_its_own_key(
        make_runtime: Callable[..., Runtime], fake: FakeStream, tmp_path: Path) -> None:
    """`{call_type}{call_id}` spells `abc` for calls `ab:c` and `a:bc`: the ledger records who owns the
    key, and the second file gets the key tagged with a hash of its file id, instead of overwriting."""
    runtime = make_runtime(call_storage_key="", key_template="{call_type}{call_id}/{filename}")
    try:
        one = fake.add_recording("ab:c", b"call ab:c", filename="rec.mp4")
        other = fake.add_recording("a:bc", b"call a:bc", filename="rec.mp4")
        keys = archive(runtime, fake, one), archive(runtime, fake, other)
        assert keys[0] == "abc/rec.mp4" and keys[1].startswith("abc/rec~h") and keys[1].endswith(".mp4")
        assert [(tmp_path / "disk" / key).read_bytes() for key in keys] == [b"call ab:c", b"call a:bc"]
        assert archive(runtime, fake, one) == keys[0]  # a redelivery keeps its own key
    finally:
        runtime.close()


def test_a_key_and_its_alternative_both_taken_fail_the_transfer(ledger: Ledger) -> None:
    """When even the alternative key belongs to another file, the transfer is `failed` with the
    reason, never queued to overwrite it."""
    files = [a_file(f"rec_{n}.mp4") for n in range(2)]
    owner, late = (transfer_id(f.file_id, "disk") for f in files)
    ledger.record(files[0], [NewTransfer(owner, "disk", "k.mp4")], expires_at=END)
    ledger.redis.hset("archiver:keyowner:disk", key_of_another_owner("k.mp4", files[1].file_id), "f_someone")
    ledger.record(files[1], [NewTransfer(late, "disk", "k.mp4")], expires_at=END)
    transfer = ledger.get(late)
    assert transfer is not None
    assert (transfer.state, transfer.reason) == ("failed", "key_taken")
    assert files[0].file_id in (transfer.error or "")
    assert ledger.redis.hget("archiver:keyowner:disk", "k.mp4") == files[0].file_id


def test_a_key_the_storage_cannot_store_fails_permanently(runtime: Runtime, fake: FakeStream) -> None:
    """A recorded key the backend refuses (a file name over NAME_MAX on local disk, a backslash) makes
    the transfer `failed` with reason key_refused at once, never a retry until the deadline."""
    for n, key in enumerate(["default/c/" + "n" * 300 + ".mp4", "default/c/back\\slash.mp4"]):
        stored = fake.add_recording("default:c", b"bytes", filename=f"rec_{n}.mp4")
        stream_file = ready_file(fake.event_for(stored))
        assert stream_file is not None
        tid = transfer_id(stream_file.file_id, "disk")
        runtime.ledger.record(stream_file, [NewTransfer(tid, "disk", key)], expires_at=END)
        assert run_transfer(runtime, tid) == "failed"
        transfer = runtime.ledger.get(tid)
        assert transfer is not None
        assert (transfer.state, transfer.reason, transfer.attempts) == ("failed", "key_refused", 1)
