"""A session's manifest (worker/sessions/manifest.py), written after each archived transfer: real Redis,
local disk, the fake Stream's CDN."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.fakestream.models import StoredFile
from tests.fakestream.server import FakeStream
from worker.files import StreamFile
from worker.intake.record import record_routes
from worker.intake.webhook import ready_file
from worker.ledger.models import NewTransfer
from worker.runtime import Runtime
from worker.sessions.manifest import RELEASE, Manifests, Session
from worker.transfer.run import run_transfer

CID = "default:m1"


def record(runtime: Runtime, fake: FakeStream, file: StoredFile) -> list[str]:
    stream_file = ready_file(fake.event_for(file))
    assert stream_file is not None
    return list(record_routes(runtime.archive, runtime.ledger, stream_file).transfer_ids)


def archive(runtime: Runtime, fake: FakeStream, file: StoredFile) -> None:
    for tid in record(runtime, fake, file):
        assert run_transfer(runtime, tid) == "archived"


def manifest_at(root: Path, session_id: str, call_cid: str = CID) -> dict[str, Any]:
    call_type, call_id = call_cid.split(":")
    return dict(json.loads((root / call_type / call_id / f"manifest_{session_id}.json").read_bytes()))


def test_the_manifest_lists_each_archived_file_with_its_checksum_and_follows_new_ones(
        make_runtime: Callable[..., Runtime], fake: FakeStream, tmp_path: Path) -> None:
    runtime = make_runtime()
    fake.add_call("default", "m1", custom={"team": "blue"})
    runtime.ledger.cache_call(CID, {"id": "m1", "custom": {"team": "blue"}}, 60_000)
    first = fake.add_recording(CID, b"a" * 300, filename="rec_default_m1_1.mp4")
    second = fake.add_recording(CID, b"b" * 200, filename="rec_default_m1_2.mp4", recording_type="individual")
    archive(runtime, fake, first)
    session = first.session_id
    assert session
    assert [f["filename"] for f in manifest_at(tmp_path / "disk", session)["files"]] == [first.filename]
    archive(runtime, fake, second)
    text = fake.add_transcription(CID, b'{"t": 1}\n', filename="transcript_default_m1_1.jsonl")
    archive(runtime, fake, text)
    manifest = manifest_at(tmp_path / "disk", session)
    assert manifest["call"] == {"call_cid": CID, "call_type": "default", "call_id": "m1", "custom": {"team": "blue"}}
    assert manifest["session"] == {"session_id": session} and manifest["manifest_version"] == 1
    assert manifest["archiver_version"]
    files = {f["filename"]: f for f in manifest["files"]}
    for stored in (first, second, text):
        listed = files[stored.filename]
        assert (listed["bytes"], listed["sha256"], listed["kind"]) == (stored.size, stored.sha256, stored.kind)
        assert listed["storage"] == "disk" and listed["key"] == f"default/m1/{stored.filename}"
        assert listed["archived_at"] and listed["start_time"] and listed["end_time"]
    assert files[second.filename]["recording_type"] == "individual"
    assert files[text.filename]["content_type"] == "application/jsonl"
    written = Manifests(runtime).written(Session(CID, session))
    raw = (tmp_path / "disk" / "default" / "m1" / f"manifest_{session}.json").read_bytes()
    assert written["sha256"] == hashlib.sha256(raw).hexdigest() and int(written["bytes"]) == len(raw)
    assert written["key"] == f"default/m1/manifest_{session}.json" and written["storages"] == "disk"


def test_every_storage_holding_the_sessions_files_gets_the_manifest(
        make_runtime: Callable[..., Runtime], fake: FakeStream, tmp_path: Path) -> None:
    runtime = make_runtime("one", "two", default_storage=["one", "two"], manifest_template="m/{session_id}.json")
    file = fake.add_recording(CID, b"x" * 10, filename="rec_default_m1_1.mp4")
    archive(runtime, fake, file)
    one, two = ((tmp_path / name / "m" / f"{file.session_id}.json").read_bytes() for name in ("one", "two"))
    assert one == two
    assert {f["storage"] for f in json.loads(one)["files"]} == {"one", "two"}


def test_a_file_without_a_session_has_no_manifest(make_runtime: Callable[..., Runtime], fake: FakeStream,
                                                 tmp_path: Path) -> None:
    runtime = make_runtime()
    archive(runtime, fake, fake.add_recording(CID, b"x" * 10, filename="rec_default_m1_1.mp4", session_id=None))
    assert not list((tmp_path / "disk").rglob("manifest_*"))


def test_a_manifest_never_replaces_a_data_file_at_its_key(make_runtime: Callable[..., Runtime], fake: FakeStream,
                                                          tmp_path: Path) -> None:
    runtime = make_runtime(manifest_template="{call_type}/{call_id}/{session_id}.mp4")
    squatter = fake.add_recording(CID, b"data" * 10, filename="s1.mp4", session_id="s0")
    archive(runtime, fake, squatter)  # its own manifest is s0.mp4: no clash with s1.mp4
    other = fake.add_recording(CID, b"y" * 10, filename="rec_default_m1_1.mp4", session_id="s1")
    with capture_logs() as logs:
        archive(runtime, fake, other)
    assert (tmp_path / "disk" / "default" / "m1" / "s1.mp4").read_bytes() == b"data" * 10
    assert [e["key"] for e in logs if e["event"] == "manifest_key_taken"] == ["default/m1/s1.mp4"]


def test_a_data_file_at_a_manifests_key_gets_another_key(make_runtime: Callable[..., Runtime], fake: FakeStream,
                                                         tmp_path: Path) -> None:
    runtime = make_runtime(manifest_template="{call_type}/{call_id}/{session_id}.mp4")
    archive(runtime, fake, fake.add_recording(CID, b"y" * 10, filename="rec_default_m1_1.mp4", session_id="s1"))
    late = fake.add_recording(CID, b"data" * 10, filename="s1.mp4", session_id="s2")
    (tid,) = record(runtime, fake, late)
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and transfer.key != "default/m1/s1.mp4" and transfer.state == "queued"


def test_a_failed_manifest_leaves_the_transfer_archived(make_runtime: Callable[..., Runtime], fake: FakeStream,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = make_runtime()

    def broken(*_: Any, **__: Any) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(Manifests, "write", broken)
    file = fake.add_recording(CID, b"x" * 10, filename="rec_default_m1_1.mp4")
    with capture_logs() as logs:
        archive(runtime, fake, file)
    assert any(e["event"] == "manifest_write_failed" for e in logs)
    assert file.session_id
    assert not runtime.ledger.redis.exists(runtime.ledger.keys.manifest_lock(f"{CID}:{file.session_id}"))


def test_while_another_process_writes_it_the_file_is_left_to_that_writer(make_runtime: Callable[..., Runtime]) -> None:
    """A writer holding the lock: the newcomer only bumps the generation, and the holder's release refuses
    while a generation it did not write is there, so it writes again."""
    runtime = make_runtime()
    ledger, session = runtime.ledger, Session(CID, "s1")
    end = datetime.now(UTC)
    file = StreamFile(call_cid=CID, kind="recording", filename="rec_default_m1_1.mp4", url="https://cdn/x?sig=1",
                      start_time=end - timedelta(minutes=5), end_time=end, session_id="s1")
    ledger.record(file, [NewTransfer("t1", "disk", "default/m1/a.mp4")], expires_at=end + timedelta(days=14))
    transfer = ledger.get("t1")
    assert transfer is not None
    keys = ledger.keys
    ledger.redis.set(keys.manifest_lock(session.name), "holder")
    assert Manifests(runtime).file_archived(transfer) is None
    assert ledger.redis.hget(keys.manifest(session.name), "generation") == "1"
    release = ledger.redis.register_script(RELEASE)
    lock_keys = [keys.manifest(session.name), keys.manifest_lock(session.name)]
    assert release(keys=lock_keys, args=["holder", "0"]) == 0  # generation 1 arrived meanwhile
    assert release(keys=lock_keys, args=["holder", "1"]) == 1
    assert not ledger.redis.exists(keys.manifest_lock(session.name))
