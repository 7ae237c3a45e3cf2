"""The archive path end to end: signed webhook in, verified object out, every transfer in Redis.

Real processes throughout: redis-server, `archiver web`, `archiver worker` (Celery, prefork),
`archiver scheduler`, moto_server for S3, and the fake Stream's CDN and webhook sender.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from config.celery import TRANSFER_QUEUE
from tests.conftest import API_SECRET
from tests.e2e.conftest import Archiver, local_storage, s3_storage, sha256
from tests.fakestream.server import FakeStream
from tests.support.moto import SECRET_KEY, s3_client
from tests.support.processes import wait_until
from tests.support.redis import RedisServer

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024


def test_recording_and_transcription_land_byte_identical_on_local_disk(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path
) -> None:
    root = tmp_path / "archive"
    service = archiver([local_storage(root)])
    url = service.start_all()
    recording = fake.add_recording("default:standup-1", os.urandom(3 * MiB + 17))
    transcript = fake.add_transcription("default:standup-1", b'{"type":"speech","text":"hello"}\n' * 500)
    assert fake.deliver(url, recording).status_code == 202
    assert fake.deliver(url, transcript, gzip=True, ns_timestamps=False).status_code == 202  # RFC 3339

    archived = service.wait_for_states(2)
    for file in (recording, transcript):
        (entry,) = [t for t in archived if t["filename"] == file.filename]
        stored = root / entry["key"]
        assert stored.read_bytes() == file.read_bytes()
        assert (entry["bytes"], entry["sha256"]) == (file.size, file.sha256)
        assert entry["key"] == f"default/standup-1/{file.filename}"
        assert entry["expires_at"].endswith("Z") and entry["error"] is None
    assert not [p for p in root.rglob("*") if p.name.startswith(".")], "no temporary file is left behind"


def test_s3_multipart_upload_is_byte_identical_and_leaves_no_upload_open(
    archiver: Callable[..., Archiver], fake: FakeStream, moto_server: str, bucket: str
) -> None:
    service = archiver([s3_storage(moto_server, bucket)])
    url = service.start_all()
    big = fake.add_recording("allhands:q4", os.urandom(12 * MiB + 123), recording_type="composite")
    small = fake.add_transcription("allhands:q4", b"{}\n" * 100)
    for file in (big, small):
        assert fake.deliver(url, file, legacy=file is small).status_code == 202

    archived = service.wait_for_states(2)
    client = s3_client(moto_server)
    for file in (big, small):
        (entry,) = [t for t in archived if t["filename"] == file.filename]
        body = client.get_object(Bucket=bucket, Key=f"recordings/{entry['key']}")["Body"].read()
        assert sha256(body) == file.sha256 == entry["sha256"]
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    head = client.head_object(Bucket=bucket, Key=f"recordings/allhands/q4/{big.filename}")
    assert head["ContentType"] == "video/mp4"
    metadata = head["Metadata"]
    assert (metadata["call_cid"], metadata["session_id"], metadata["recording_type"]) == (
        "allhands:q4", big.session_id, "composite")
    assert metadata["start_time"].endswith("Z") and metadata["end_time"] > metadata["start_time"]

    logs = service.logs()
    assert "recording_archived" in logs
    for secret in (API_SECRET, SECRET_KEY, "Signature=", "Expires="):
        assert secret not in logs, f"{secret!r} leaked into a log line"
    shown = service.cli("transfers", "show", archived[0]["id"])
    assert shown.returncode == 0 and SECRET_KEY not in shown.stdout and "Signature=" not in shown.stdout


def test_five_concurrent_deliveries_give_one_transfer_and_one_upload(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path
) -> None:
    service = archiver([local_storage(tmp_path / "archive")])
    url = service.start_all()
    recording = fake.add_recording("default:dupes", os.urandom(MiB))
    with ThreadPoolExecutor(5) as pool:
        statuses = sorted(pool.map(lambda _: fake.deliver(url, recording).status_code, range(5)))
    assert statuses == [200, 200, 200, 200, 202]

    service.wait_for_states(1)
    assert len(service.transfers()) == 1
    assert fake.downloads_of(recording) == 1


def test_bad_signature_or_api_key_gets_401_and_records_nothing(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path
) -> None:
    service = archiver([local_storage(tmp_path / "archive")])
    url = service.start_web()
    recording = fake.add_recording("default:forged", b"x" * 1000)
    assert fake.deliver(url, recording, signature="0" * 64).status_code == 401
    assert fake.deliver(url, recording, headers_override={"X-SIGNATURE": None}).status_code == 401
    assert fake.deliver(url, recording, headers_override={"X-API-KEY": "someone-else"}).status_code == 401
    assert service.transfers() == []
    assert "webhook_refused" in service.logs()


def test_a_lost_queue_message_is_recovered_by_the_sweep(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path, redis_url: str
) -> None:
    # Routes known at intake, so the queued message is the transfer itself (the scheduler's own
    # reconciliation would find a file still waiting for its routes without the sweep).
    service = archiver([local_storage(tmp_path / "archive")], call_storage_key="")
    url = service.start_web()
    recording = fake.add_recording("default:lost-msg", os.urandom(MiB))
    assert fake.deliver(url, recording).status_code == 202

    broker = redis.Redis.from_url(redis_url)
    wait_until(lambda: broker.llen(TRANSFER_QUEUE) == 1, timeout=10, message="the receiver to queue the transfer")
    broker.delete(TRANSFER_QUEUE)  # the message is lost on the way
    service.start_worker()
    service.start_scheduler()
    (entry,) = service.wait_for_states(1, timeout=60)
    assert (tmp_path / "archive" / entry["key"]).read_bytes() == recording.read_bytes()
    assert "sweep_queued_transfers" in service.logs()


def test_redis_down_at_intake_answers_503_and_the_retry_is_archived(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path, redis_server: RedisServer
) -> None:
    service = archiver([local_storage(tmp_path / "archive")])
    url = service.start_web()
    recording = fake.add_recording("default:redis-down", os.urandom(MiB))
    redis_server.stop()
    try:
        assert fake.deliver(url, recording).status_code == 503
    finally:
        redis_server.start()
    assert fake.deliver(url, recording, attempt=2).status_code == 202  # Stream retries
    service.start_worker()
    service.start_scheduler()
    service.wait_for_states(1)


def test_transient_source_errors_are_retried_and_never_stored_short(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path
) -> None:
    service = archiver([local_storage(tmp_path / "archive")])
    url = service.start_all()
    recording = fake.add_recording("default:flaky", os.urandom(2 * MiB))
    fake.fail_next(recording.filename, 503, count=1)
    fake.truncate_next(recording.filename, after_bytes=MiB, count=1)
    assert fake.deliver(url, recording).status_code == 202

    (entry,) = service.wait_for_states(1)
    assert entry["attempts"] == 2 and entry["error"] is None  # the short body is resumed within attempt 2
    assert (tmp_path / "archive" / entry["key"]).read_bytes() == recording.read_bytes()
    logs = service.logs()
    assert "answered 503" in logs and "after 1048576 " in logs


def test_a_missing_bucket_is_a_permanent_failure_with_its_reason(
    archiver: Callable[..., Archiver], fake: FakeStream, moto_server: str
) -> None:
    service = archiver([s3_storage(moto_server, "no-such-bucket-here")])
    url = service.start_all()
    recording = fake.add_recording("default:nobucket", b"x" * 4096)
    assert fake.deliver(url, recording).status_code == 202
    (entry,) = service.wait_for_states(1, state="failed")
    assert "no-such-bucket-here" in entry["error"] and "NoSuchBucket" in entry["error"]
    assert entry["reason"] == "missing_bucket"
    assert entry["attempts"] == 1


def test_a_url_outside_download_hosts_is_refused(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path
) -> None:
    service = archiver([local_storage(tmp_path / "archive")], download_hosts=["*.stream-io-cdn.com"])
    url = service.start_all()
    recording = fake.add_recording("default:ssrf", b"x" * 100)
    assert fake.deliver(url, recording).status_code == 202
    (entry,) = service.wait_for_states(1, state="failed")
    assert "not on an allowed download host" in entry["error"] and "Signature" not in entry["error"]
    assert fake.downloads_of(recording) == 0


def test_transfers_list_json_has_the_public_fields(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path
) -> None:
    service = archiver([local_storage(tmp_path / "archive")], call_storage_key="")
    url = service.start_web()
    recording = fake.add_recording("default:fields", b"x" * 10)
    fake.deliver(url, recording)
    (line,) = service.cli("transfers", "list", "--json").stdout.splitlines()
    entry = json.loads(line)
    assert {"id", "call_cid", "session_id", "kind", "filename", "storage", "key", "state", "bytes", "sha256",
            "attempts", "error", "expires_at"} <= set(entry)
    assert (entry["state"], entry["kind"], entry["session_id"]) == ("queued", "recording", recording.session_id)
    assert service.cli("transfers", "show", "t_nope").returncode == 1
