"""A session's manifest end to end: two recordings and a transcription of one session, archived, are listed in
one manifest beside them with their sizes and checksums; a transcription arriving after the first manifest
was written is added to it when archived, and the ledger keeps the SHA-256 of the manifest written last.
A transcription that only a reconciliation finds delays `session.archived` until it is archived too; then
one signed `session.archived` lists the three files and the final manifest says it is complete.

Real processes: redis-server, `archiver web`, `archiver worker`, `archiver scheduler`, the fake Stream's
API, CDN and webhook sender.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.e2e.conftest import Archiver, local_storage
from tests.fakestream.server import FakeStream
from tests.support.hooks import HookReceiver
from tests.support.processes import wait_until

pytestmark = pytest.mark.e2e
CID = "default:manifested"
SECRET = "whsec-manifest"


def listed(path: Path) -> dict[str, Any] | None:
    """The manifest at `path` (None while it is not there)."""
    return json.loads(path.read_bytes()) if path.exists() else None


def test_one_manifest_lists_the_session_and_follows_a_late_transcription(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path, redis_url: str
) -> None:
    root = tmp_path / "archive"
    service = archiver([local_storage(root)])
    url = service.start_all()
    fake.add_call("default", "manifested", custom={"project": "p-7"})
    recordings = [fake.add_recording(CID, bytes([n]) * 50_000, filename=f"rec_default_manifested_{n}.mp4")
                  for n in (1, 2)]
    for file in recordings:
        assert fake.deliver(url, file).status_code == 202
    session = recordings[0].session_id
    assert session and recordings[1].session_id == session
    path = root / "default" / "manifested" / f"manifest_{session}.json"

    def files_listed() -> set[str]:
        manifest = listed(path)
        return {f["filename"] for f in manifest["files"]} if manifest else set()

    wait_until(lambda: files_listed() == {f.filename for f in recordings}, timeout=60,
               message="the manifest listing both recordings")
    first = path.read_bytes()

    text = fake.add_transcription(CID, b'{"text": "hello"}\n', filename="transcript_default_manifested_1.jsonl")
    assert fake.deliver(url, text).status_code == 202
    wait_until(lambda: len(files_listed()) == 3, timeout=60, message="the manifest listing the transcription")
    service.wait_for_states(3)

    manifest = listed(path)
    assert manifest is not None and path.read_bytes() != first
    assert manifest["call"]["call_cid"] == CID and manifest["call"]["custom"] == {"project": "p-7"}
    assert manifest["session"]["session_id"] == session
    by_name = {f["filename"]: f for f in manifest["files"]}
    for file in (*recordings, text):
        entry = by_name[file.filename]
        assert (entry["kind"], entry["bytes"], entry["sha256"]) == (file.kind, file.size, file.sha256)
        assert hashlib.sha256((root / entry["key"]).read_bytes()).hexdigest() == entry["sha256"]
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        written = client.hgetall(f"archiver:manifest:{CID}:{session}")
    finally:
        client.close()
    assert written["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert written["key"] == f"default/manifested/manifest_{session}.json"


def test_a_file_found_by_reconciliation_delays_session_archived_until_it_is_in(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path, hooks: HookReceiver
) -> None:
    root, cid = tmp_path / "archive", "default:settles"
    service = archiver([local_storage(root)], call_storage_key="", settle_after="1s",
                       notify=[{"url": hooks.url, "secret": SECRET, "events": ["session.archived"]}])
    url = service.start_web()
    service.start_worker()  # no scheduler: the reconciliations below are the only ones
    ended = datetime.now(UTC) - timedelta(minutes=5)
    fake.add_call("default", "settles", ended_at=ended)
    recordings = [fake.add_recording(cid, bytes([n]) * 10_000, filename=f"rec_default_settles_{n}.mp4",
                                     end_time=ended) for n in (1, 2)]
    for file in recordings:
        assert fake.deliver(url, file).status_code == 202
    session = recordings[0].session_id
    path = root / "default" / "settles" / f"manifest_{session}.json"
    wait_until(lambda: len((listed(path) or {"files": []})["files"]) == 2, timeout=60,
               message="the first manifest")
    text = fake.add_transcription(cid, b'{"text": "late"}\n', filename="transcript_default_settles_1.jsonl",
                                  end_time=ended)  # its webhook never comes

    assert service.cli("reconcile").returncode == 0  # finds the transcription: the session is not settled
    assert service.cli("notifications", "list", "--json").stdout.strip() == ""
    service.wait_for_states(3)
    wait_until(lambda: len((listed(path) or {"files": []})["files"]) == 3, timeout=60,
               message="the manifest with the transcription")
    assert not hooks.delivered()

    assert service.cli("reconcile").returncode == 0  # settled, and every file archived: complete
    wait_until(lambda: len(hooks.delivered()) == 1, timeout=30, message="session.archived delivered")
    assert service.cli("reconcile").returncode == 0  # once
    (hook,) = hooks.delivered()
    assert hook.signed_by(SECRET) and hook.event["type"] == "session.archived"
    data = hook.event["data"]
    assert (data["call_cid"], data["session_id"]) == (cid, session)
    assert data["manifest_key"] == f"default/settles/manifest_{session}.json"
    assert sorted(f["filename"] for f in data["files"]) == sorted([*(f.filename for f in recordings), text.filename])
    assert {f["filename"]: f["sha256"] for f in data["files"]} == {
        f.filename: f.sha256 for f in (*recordings, text)}
    final = listed(path)
    assert final is not None and final["complete"] is True and len(final["files"]) == 3
