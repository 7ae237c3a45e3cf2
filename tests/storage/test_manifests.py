"""A session's manifest (worker/sessions/manifest.py) in every backend: moto_server (S3), the GCS emulator,
Azurite and local disk. Files are archived by `run_transfer` from the fake Stream's CDN into the backend, and
the manifest is read back behind the archiver's back through the conftest's `storage` (same bucket, same
prefix): its bytes are the manifest the ledger records, a rewrite replaces it, and a data file at its key
is never replaced by it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.fakestream.models import StoredFile
from tests.fakestream.server import FakeStream
from tests.support.azurite import ACCOUNT, ACCOUNT_KEY
from tests.support.moto import ACCESS_KEY, REGION, SECRET_KEY
from worker.intake.record import record_routes
from worker.intake.webhook import ready_file
from worker.runtime import Runtime
from worker.sessions.manifest import Manifests, Session
from worker.storage.base import Storage
from worker.transfer.run import run_transfer

CID = "default:m1"
NAME = "store"  # the storage's name in the archiver's configuration


@pytest.fixture(params=["s3", "gcs", "abs", "local"])
def backend(request: pytest.FixtureRequest) -> str:
    """Every backend, in place of a module's single ``BACKEND``."""
    return str(request.param)


@pytest.fixture
def table(request: pytest.FixtureRequest, backend: str, prefix: str) -> dict[str, Any]:
    """The ``[[storages]]`` table of the bucket (container, root) that `storage` reads, under `prefix`."""
    if backend == "s3":
        options = {"s3_region": REGION, "s3_api_key": ACCESS_KEY, "s3_secret": SECRET_KEY,
                   "s3_custom_endpoint_url": request.getfixturevalue("moto_server")}
        return {"storage_type": "s3", "bucket": request.getfixturevalue("bucket"), "aws_s3": options}
    if backend == "gcs":
        return {"storage_type": "gcs", "bucket": request.getfixturevalue("bucket"),
                "gcs_endpoint_url": request.getfixturevalue("gcs_emulator")}
    if backend == "abs":
        options = {"abs_account_name": ACCOUNT, "abs_account_key": ACCOUNT_KEY,
                   "abs_endpoint_url": request.getfixturevalue("azurite")}
        return {"storage_type": "abs", "bucket": request.getfixturevalue("container"), "azure_blob": options}
    return {"storage_type": "local", "bucket": str(request.getfixturevalue("root"))}


@pytest.fixture
def make_runtime(make_settings: Any, fake: FakeStream, table: dict[str, Any], prefix: str,
                 ) -> Iterator[Callable[..., Runtime]]:
    """make_runtime(**top_level) → a Runtime whose one storage `store` is the backend's `table`."""
    made: list[Runtime] = []

    def build(**archive: Any) -> Runtime:
        settings = make_settings(env={"STREAM_BASE_URL": fake.base_url}, download_hosts=[fake.cdn_host],
                                 default_storage=NAME, storages=[{"name": NAME, "path": prefix, **table}], **archive)
        made.append(Runtime.from_settings(settings))
        return made[-1]

    yield build
    for runtime in made:
        runtime.close()


def archive(runtime: Runtime, fake: FakeStream, file: StoredFile) -> None:
    stream_file = ready_file(fake.event_for(file))
    assert stream_file is not None
    for tid in record_routes(runtime.archive, runtime.ledger, stream_file).transfer_ids:
        assert run_transfer(runtime, tid) == "archived"


def read(storage: Storage, key: str) -> bytes:
    return b"".join(storage.read(key))


def checked(runtime: Runtime, storage: Storage, session: Session) -> dict[str, Any]:
    """The manifest in the backend, once checked against the ledger's record of it (key, SHA-256, size,
    storages); the backend's own checks (size, stored checksums) agree too."""
    written = Manifests(runtime).written(session)
    assert written["key"] == f"default/m1/manifest_{session.session_id}.json" and written["storages"] == NAME
    raw = read(storage, written["key"])
    assert written["sha256"] == hashlib.sha256(raw).hexdigest() and int(written["bytes"]) == len(raw)
    assert storage.verify(written["key"], len(raw), written["sha256"]) is None
    assert storage.stat(written["key"]).content_type == "application/json"
    return dict(json.loads(raw))


def test_the_manifest_in_the_backend_is_the_ledgers_and_each_rewrite_replaces_it(
        make_runtime: Callable[..., Runtime], fake: FakeStream, storage: Storage) -> None:
    """Written after the first file, replaced after the second (which appears in it) and by the final
    rewrite (complete); each time the object's bytes hash to the SHA-256 the ledger records."""
    runtime = make_runtime()
    first = fake.add_recording(CID, b"a" * 300, filename="rec_default_m1_1.mp4")
    archive(runtime, fake, first)
    assert first.session_id
    session = Session(CID, first.session_id)
    manifest = checked(runtime, storage, session)
    assert [(f["filename"], f["storage"], f["key"]) for f in manifest["files"]] == [
        (first.filename, NAME, f"default/m1/{first.filename}")]
    before = Manifests(runtime).written(session)["sha256"]

    text = fake.add_transcription(CID, b'{"t": 1}\n', filename="transcript_default_m1_1.jsonl")
    archive(runtime, fake, text)
    manifest = checked(runtime, storage, session)
    assert {f["filename"]: f["sha256"] for f in manifest["files"]} == {
        first.filename: first.sha256, text.filename: text.sha256}
    assert Manifests(runtime).written(session)["sha256"] != before and manifest["complete"] is False

    assert Manifests(runtime).rewrite(session, final=True) is not None
    assert checked(runtime, storage, session)["complete"] is True
    assert read(storage, f"default/m1/{first.filename}") == b"a" * 300


def test_a_manifest_never_replaces_a_data_file_at_its_key_in_the_backend(
        make_runtime: Callable[..., Runtime], fake: FakeStream, storage: Storage) -> None:
    """A data file holds the key the manifest of another session would have: the manifest is not written
    there (`manifest_key_taken`), and the data file's bytes are still the file's; a data file arriving at a
    manifest's key goes to another key, and the manifest stays."""
    runtime = make_runtime(manifest_template="{call_type}/{call_id}/{session_id}.mp4")
    squatter = fake.add_recording(CID, b"data" * 10, filename="s1.mp4", session_id="s0")
    archive(runtime, fake, squatter)
    other = fake.add_recording(CID, b"y" * 10, filename="rec_default_m1_1.mp4", session_id="s1")
    with capture_logs() as logs:
        archive(runtime, fake, other)
    assert [e["key"] for e in logs if e["event"] == "manifest_key_taken"] == ["default/m1/s1.mp4"]
    assert read(storage, "default/m1/s1.mp4") == b"data" * 10
    assert storage.verify("default/m1/s1.mp4", squatter.size, squatter.sha256) is None
    assert json.loads(read(storage, "default/m1/s0.mp4"))["files"][0]["filename"] == "s1.mp4"
    late = fake.add_recording(CID, b"late" * 10, filename="s0.mp4", session_id="s2")
    archive(runtime, fake, late)
    assert json.loads(read(storage, "default/m1/s0.mp4"))["session"] == {"session_id": "s0"}
    (key,) = (f["key"] for f in json.loads(read(storage, "default/m1/s2.mp4"))["files"])
    assert key != "default/m1/s0.mp4" and read(storage, key) == b"late" * 10
