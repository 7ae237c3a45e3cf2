"""Legal holds and erasure end to end (worker/compliance, `archiver hold`, `archiver erase`): real Redis, the
fake Stream, a local disk and moto_server with an Object Lock bucket (so versioned), the CLI as a real process."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from mypy_boto3_s3 import S3Client

from tests.fakestream.models import StoredFile
from tests.fakestream.server import FakeStream
from tests.support.ledger_states import Run, run_cli
from tests.support.moto import ACCESS_KEY, REGION, SECRET_KEY
from worker.compliance.calls import UnknownCall, resolve_call
from worker.compliance.erase import erase_call
from worker.discovery.deletion import delete_archived
from worker.intake.record import record_routes
from worker.intake.webhook import ready_file
from worker.ledger.prune import prune_archived
from worker.runtime import Runtime
from worker.transfer.run import run_transfer

CID = "default:case-1"


@pytest.fixture
def vault(moto_client: S3Client) -> str:
    """A fresh bucket with Object Lock (and so versioning) on the session's moto_server."""
    name = f"vault-{uuid.uuid4().hex[:16]}"
    moto_client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime], moto_server: str, vault: str) -> Runtime:
    """Every file goes to local disk `disk` and to S3 `vault` (Object Lock)."""
    s3 = {"name": "vault", "storage_type": "s3", "bucket": vault, "path": "p/",
          "aws_s3": {"s3_region": REGION, "s3_api_key": ACCESS_KEY, "s3_secret": SECRET_KEY,
                     "s3_custom_endpoint_url": moto_server}}
    return make_runtime("disk", s3, call_types={"default": ["disk", "vault"]}, call_storage_key="")


def archive(runtime: Runtime, fake: FakeStream, file: StoredFile) -> list[str]:
    stream_file = ready_file(fake.event_for(file))
    assert stream_file is not None
    recorded = record_routes(runtime.archive, runtime.ledger, stream_file)
    for tid in recorded.to_queue:
        run_transfer(runtime, tid)
    return recorded.transfer_ids


def cli(runtime: Runtime, fake: FakeStream, tmp_path: Path, *args: str) -> Run:
    redis_url = runtime.settings.env.redis_url
    return run_cli(redis_url, *args, ARCHIVER_CONFIG=str(tmp_path / "archiver.toml"), STREAM_BASE_URL=fake.base_url)


def s3_versions(client: S3Client, bucket: str, key: str) -> list[dict[str, Any]]:
    listed = client.list_object_versions(Bucket=bucket, Prefix="p/" + key)
    return [v for v in [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])] if v["Key"] == "p/" + key]


def ledger_manifests(runtime: Runtime) -> list[str]:
    return [str(k) for k in runtime.ledger.redis.scan_iter(runtime.ledger.keys.manifest("*"))]


def audit_actions(runtime: Runtime) -> list[dict[str, Any]]:
    return [json.loads(e) for e in runtime.ledger.redis.lrange(runtime.ledger.keys.auditlog_pending, 0, -1)]


def test_hold_blocks_erase_prune_and_delete_archived_release_lets_erase_remove_every_copy(
        runtime: Runtime, fake: FakeStream, moto_client: S3Client, vault: str, tmp_path: Path) -> None:
    """The whole story: a held call is held at S3 (read back ON), ledger-only on disk; erase refuses it
    (exit 1, each object's reason: 4 copies and 2 manifests, nothing deleted); prune and delete-archived
    skip it; after the release erase deletes every version (delete markers too), the disk file, the
    manifests, the files at Stream and the ledger's records, and each step is in the audit log."""
    recording = fake.add_recording(CID, b"r" * 1000)
    transcript = fake.add_transcription(CID, b'{"t": 1}\n')
    tids = archive(runtime, fake, recording) + archive(runtime, fake, transcript)
    transfers = [runtime.ledger.get(t) for t in tids]
    assert all(t is not None and t.state == "archived" for t in transfers)
    key = next(t.key for t in transfers if t is not None and t.storage == "vault" and t.kind == "recording")
    moto_client.delete_object(Bucket=vault, Key="p/" + key)  # a delete marker in front: not an erasure

    held = cli(runtime, fake, tmp_path, "hold", "--call", CID, "--reason", "litigation 42")
    assert held.returncode == 0, held.stdout + held.stderr
    assert "ledger only" in held.stdout and "held" in held.stdout
    version = next(v for v in s3_versions(moto_client, vault, key) if "Size" in v)
    answer = moto_client.get_object_legal_hold(Bucket=vault, Key="p/" + key, VersionId=version["VersionId"])
    assert answer["LegalHold"]["Status"] == "ON"

    refused = cli(runtime, fake, tmp_path, "erase", "--call", CID)
    assert refused.returncode == 1
    assert refused.stdout.count("blocked (legal_hold)") == 6 and "litigation 42" in refused.stdout
    assert len(s3_versions(moto_client, vault, key)) == 2 and (tmp_path / "disk" / key).exists()
    assert len(fake.files(CID)) == 1 and len(fake.files(CID, "transcription")) == 1

    assert delete_archived(runtime, dry_run=False).held == 2 and len(fake.files(CID)) == 1
    far = runtime.ledger.now_ms() + 365 * 86_400_000
    assert prune_archived(runtime.ledger, timedelta(0), now=far).outcomes["held"] == 4

    released = cli(runtime, fake, tmp_path, "hold", "--release", "--call", CID)
    assert released.returncode == 0, released.stdout + released.stderr
    answer = moto_client.get_object_legal_hold(Bucket=vault, Key="p/" + key, VersionId=version["VersionId"])
    assert answer["LegalHold"]["Status"] == "OFF"

    dry = cli(runtime, fake, tmp_path, "erase", "--call", "case-1", "--dry-run")  # the id alone: one call has it
    assert dry.returncode == 0 and "would be erased" in dry.stdout
    assert len(s3_versions(moto_client, vault, key)) == 2

    ledger = runtime.ledger
    erased = cli(runtime, fake, tmp_path, "erase", "--call", CID)
    assert erased.returncode == 0, erased.stdout + erased.stderr
    assert s3_versions(moto_client, vault, key) == [] and not (tmp_path / "disk" / key).exists()
    left = moto_client.list_object_versions(Bucket=vault)
    assert not left.get("Versions") and not left.get("DeleteMarkers")  # the manifest's versions too
    assert not [p for p in (tmp_path / "disk").rglob("*") if p.is_file()]
    assert not ledger_manifests(runtime)
    assert fake.files(CID) == [] and fake.files(CID, "transcription") == []
    assert all(ledger.get(t) is None for t in tids)
    assert not ledger.redis.smembers(ledger.keys.call_files("case-1"))
    file_ids = {t.file_id for t in transfers if t is not None}
    assert all(ledger.file(f) == {} and ledger.redis.exists(ledger.keys.erased(f)) for f in file_ids)
    steps = [(e["action"], e.get("outcome", "")) for e in audit_actions(runtime)]
    assert ("hold", "held in the ledger") in steps and ("release", "released in the ledger") in steps
    assert any(a == "erase" and o.startswith("refused") for a, o in steps)
    assert any(a == "erase" and o == "erased delete_marker" for a, o in steps)
    assert ("erase", "done") in steps


def test_an_unexpired_retention_blocks_the_whole_erasure(
        runtime: Runtime, fake: FakeStream, moto_client: S3Client, vault: str, tmp_path: Path) -> None:
    """A version under Object Lock retention in one storage: nothing is deleted anywhere, the object is
    named with reason retention, and the files stay at Stream."""
    recording = fake.add_recording(CID, b"r" * 100)
    archive(runtime, fake, recording)
    key = next(t.key for t in (runtime.ledger.get(i) for i in archive(runtime, fake, recording)) if t)
    moto_client.put_object(Bucket=vault, Key="p/" + key, Body=b"r" * 100, ObjectLockMode="COMPLIANCE",
                           ObjectLockRetainUntilDate=datetime.now(UTC) + timedelta(days=1), ChecksumAlgorithm="CRC32")
    report = erase_call(runtime, CID)
    assert report.refused and not report.ok
    [blocked] = report.blocked
    assert blocked.storage == "vault" and blocked.reason == "retention" and "retained until" in str(blocked.blocked)
    assert (tmp_path / "disk" / key).exists() and len(s3_versions(moto_client, vault, key)) == 2
    assert len(fake.files(CID)) == 1


def test_an_erased_file_is_not_archived_again_even_when_streams_delete_failed(
        runtime: Runtime, fake: FakeStream, tmp_path: Path) -> None:
    """Stream refuses the delete: the erasure reports it (exit status 1 at the CLI), the copies are gone,
    and a later webhook or reconciliation finding the file at Stream records nothing (``erased:<fid>``)."""
    recording = fake.add_recording(CID, b"r" * 100)
    archive(runtime, fake, recording)
    fake.fail_next_api("/recordings/", 403)
    report = erase_call(runtime, CID)
    assert not report.ok and report.failed and "Stream" in report.failed[0]
    assert len(fake.files(CID)) == 1  # Stream still has it
    assert archive(runtime, fake, recording) == []
    stream_file = ready_file(fake.event_for(recording))
    assert stream_file is not None and runtime.ledger.file(stream_file.file_id) == {}


def test_a_call_id_alone_must_name_one_call(runtime: Runtime, fake: FakeStream) -> None:
    """`--call` takes type:id, or an id alone only when the ledger knows exactly one call of that id."""
    archive(runtime, fake, fake.add_recording("default:twice", b"x"))
    assert resolve_call(runtime.ledger, "twice") == "default:twice"
    archive(runtime, fake, fake.add_recording("livestream:twice", b"x"))
    with pytest.raises(UnknownCall, match="several calls"):
        resolve_call(runtime.ledger, "twice")
    with pytest.raises(UnknownCall, match="no call"):
        resolve_call(runtime.ledger, "nobody")
    assert resolve_call(runtime.ledger, "default:nobody") == "default:nobody"


def test_erasing_one_session_keeps_the_others(make_runtime: Callable[..., Runtime], fake: FakeStream,
                                              tmp_path: Path) -> None:
    """--session: that session's files, manifest and records go; the call's other session stays whole."""
    runtime = make_runtime("disk", call_storage_key="")
    gone = fake.add_recording(CID, b"a" * 10, session_id="s-gone")
    kept = fake.add_recording(CID, b"b" * 10, session_id="s-kept")
    archive(runtime, fake, gone)
    (kept_tid,) = archive(runtime, fake, kept)
    report = erase_call(runtime, CID, "s-gone")
    assert report.ok and {t.what for t in report.targets} == {"file", "manifest"}
    assert [f.filename for f in fake.files(CID)] == [kept.filename]
    assert runtime.ledger.get(kept_tid) is not None and not runtime.ledger.redis.exists(
        runtime.ledger.keys.manifest(f"{CID}:s-gone"))
    assert runtime.ledger.redis.exists(runtime.ledger.keys.manifest(f"{CID}:s-kept"))
    names = sorted(p.name for p in (tmp_path / "disk").rglob("*") if p.is_file())
    assert names == sorted([kept.filename, "manifest_s-kept.json"])
