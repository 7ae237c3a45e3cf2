"""Create-only transfers (worker/transfer/taken.py): the file's bytes already at its key are archived as
they are (an idempotent retry); other bytes fail the transfer with reason key_taken and stay untouched;
a transfer queued again for a damaged object replaces it. Real Redis, local disk or moto_server, the
fake Stream's CDN, in process."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mypy_boto3_s3 import S3Client
from structlog.testing import capture_logs

from tests.fakestream.models import StoredFile
from tests.fakestream.server import FakeStream
from tests.support.faultproxy import FaultProxy, lose_answer
from tests.support.moto import ACCESS_KEY, REGION, SECRET_KEY
from tests.unit.transfer.test_transfer import PullingStorage, record
from worker.runtime import Runtime
from worker.storage import Storage
from worker.transfer.run import run_transfer

MiB = 1024 * 1024


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime], tmp_path: Path) -> Runtime:
    disk = {"name": "disk", "storage_type": "local", "bucket": str(tmp_path / "archive")}
    return make_runtime(disk, retry_backoff="10s", retry_backoff_max="1m")


def put(storage: Storage, key: str, data: bytes) -> None:
    """An object at `key` written outside the transfer (an earlier attempt, or someone else)."""
    with storage.open_writer(key, content_type="video/mp4", metadata={}, overwrite=True) as writer:
        writer.write(data)
        writer.commit()


def read(storage: Storage, key: str) -> bytes:
    return b"".join(storage.read(key))


def key_of(runtime: Runtime, tid: str) -> str:
    transfer = runtime.ledger.get(tid)
    assert transfer is not None
    return transfer.key


def test_the_files_bytes_already_at_its_key_are_archived_without_writing(runtime: Runtime, fake: FakeStream,
                                                                         tmp_path: Path) -> None:
    """An earlier attempt committed the object and died before the ledger heard of it: the retry
    fetches and hashes the file, finds the same bytes at its key and records them archived; the object
    is the earlier one, not written again."""
    file = fake.add_recording("default:again", os.urandom(50_000))
    tid = record(runtime, fake, file)
    put(runtime.storage("disk"), key_of(runtime, tid), file.read_bytes())
    path = tmp_path / "archive" / key_of(runtime, tid)
    inode = path.stat().st_ino
    with capture_logs() as logs:
        assert run_transfer(runtime, tid) == "archived"
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and (transfer.bytes, transfer.sha256, transfer.error) == (file.size, file.sha256, None)
    assert path.stat().st_ino == inode and path.read_bytes() == file.read_bytes()
    assert "object_already_archived" in [entry["event"] for entry in logs]


def test_other_bytes_at_the_key_fail_the_transfer_until_moved_away(runtime: Runtime, fake: FakeStream,
                                                                   tmp_path: Path) -> None:
    """Another object (same size, other bytes) at the key: the transfer fails for good with reason
    key_taken and says what to do; the object stays untouched and nothing else is written. Once the
    operator moved it away, `transfers retry` archives the file."""
    file = fake.add_recording("default:taken", os.urandom(40_000))
    tid = record(runtime, fake, file)
    key, storage = key_of(runtime, tid), runtime.storage("disk")
    other = os.urandom(40_000)
    put(storage, key, other)
    assert run_transfer(runtime, tid) == "failed"
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and (transfer.state, transfer.reason) == ("failed", "key_taken")
    assert "already holds other bytes" in (transfer.error or "") and "sha256" in (transfer.error or "")
    assert "key_template" in (transfer.error or "")
    assert read(storage, key) == other
    assert sorted(p.name for p in (tmp_path / "archive" / key).parent.iterdir()) == [Path(key).name]
    storage.delete(key)
    assert runtime.ledger.retry(tid) and run_transfer(runtime, tid) == "archived"
    assert read(storage, key) == file.read_bytes()


def test_a_transfer_queued_again_for_a_damaged_object_replaces_it(runtime: Runtime, fake: FakeStream) -> None:
    """A verification found the archived object damaged and queued the transfer again (`replace`): its
    write replaces that object (the one exception for a file), then it is create-only again."""
    file = fake.add_recording("default:damaged", os.urandom(30_000))
    tid = record(runtime, fake, file)
    assert run_transfer(runtime, tid) == "archived"
    key, storage = key_of(runtime, tid), runtime.storage("disk")
    put(storage, key, os.urandom(30_000))
    assert runtime.ledger.requeue_archived(tid, "sha256 changed")
    queued = runtime.ledger.get(tid)
    assert queued is not None and queued.replaces and queued.reason == "object_changed"
    assert run_transfer(runtime, tid) == "archived"
    assert read(storage, key) == file.read_bytes()
    done = runtime.ledger.get(tid)
    assert done is not None and not done.replaces and done.sha256 == file.sha256


def test_a_replacing_transfer_still_replaces_after_a_transient_failure(runtime: Runtime, fake: FakeStream) -> None:
    """`replace` outlives the reason object_changed: after a failed attempt (reason: the error's), the
    next attempt still replaces the damaged object."""
    file = fake.add_recording("default:flaky", os.urandom(20_000))
    tid = record(runtime, fake, file)
    assert run_transfer(runtime, tid) == "archived"
    key, storage = key_of(runtime, tid), runtime.storage("disk")
    put(storage, key, b"damaged")
    assert runtime.ledger.requeue_archived(tid, "size changed")
    fake.fail_next(file.filename, 500)
    assert run_transfer(runtime, tid) == "retry"
    runtime.ledger.redis.hset(f"archiver:transfer:{tid}", "next_attempt_at", 0)
    waiting = runtime.ledger.get(tid)
    assert waiting is not None and waiting.reason != "object_changed" and waiting.replaces
    assert run_transfer(runtime, tid) == "archived" and read(storage, key) == file.read_bytes()


def test_a_server_side_copy_into_a_taken_key_streams_to_compare(runtime: Runtime, fake: FakeStream,
                                                                tmp_path: Path) -> None:
    """A store that copies the source itself refuses the taken key; the worker then streams the file
    without writing it and compares: the same bytes are archived."""
    runtime._storages["disk"] = PullingStorage("disk", tmp_path / "archive")
    file = fake.add_recording("default:pulled", os.urandom(25_000))
    tid = record(runtime, fake, file)
    put(runtime.storage("disk"), key_of(runtime, tid), file.read_bytes())
    assert run_transfer(runtime, tid) == "archived"
    assert fake.downloads_of(file) == 2  # this store fetches before it writes (Azure checks the name first)


def s3_table(endpoint: str, bucket: str) -> dict[str, Any]:
    return {"name": "s3", "storage_type": "s3", "bucket": bucket, "path": "p/",
            "aws_s3": {"s3_region": REGION, "s3_api_key": ACCESS_KEY, "s3_secret": SECRET_KEY,
                       "s3_custom_endpoint_url": endpoint}}  # fmt: skip


@pytest.fixture
def s3_runtime(make_runtime: Callable[..., Runtime], moto_server: str, bucket: str) -> Runtime:
    return make_runtime(s3_table(moto_server, bucket), transfer={"part_size": "5MiB", "multipart_threshold": "5MiB"},
                        retry_backoff="10s", retry_backoff_max="1m")


def pending_uploads(client: S3Client, bucket: str) -> list[Any]:
    return list(client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


@pytest.mark.parametrize("same", [True, False], ids=["same-bytes", "other-bytes"])
def test_on_s3_a_taken_key_past_the_threshold_gets_no_part(s3_runtime: Runtime, fake: FakeStream,
                                                           moto_client: S3Client, bucket: str, same: bool) -> None:
    """An 11 MiB file (a multipart upload) whose key holds an object: the writer's HEAD refuses it before
    the first part (no upload is created), the rest is fetched and hashed only, and the object there is
    read back to compare (a PutObject without sha256 metadata): archived, or failed with key_taken."""
    file: StoredFile = fake.add_recording("default:big", os.urandom(11 * MiB))
    tid = record(s3_runtime, fake, file)
    key = key_of(s3_runtime, tid)
    there = file.read_bytes() if same else os.urandom(11 * MiB)
    moto_client.put_object(Bucket=bucket, Key=f"p/{key}", Body=there)
    assert run_transfer(s3_runtime, tid) == ("archived" if same else "failed")
    transfer = s3_runtime.ledger.get(tid)
    assert transfer is not None
    assert transfer.sha256 == (file.sha256 if same else None)
    assert transfer.reason == (None if same else "key_taken")
    stored = moto_client.get_object(Bucket=bucket, Key=f"p/{key}")["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(there).hexdigest()
    assert pending_uploads(moto_client, bucket) == [] and fake.downloads_of(file) == 1


@pytest.mark.parametrize("size", [1 * MiB, 11 * MiB], ids=["one-put", "multipart"])
def test_on_s3_a_commit_whose_answer_was_lost_is_archived_not_key_taken(
    make_runtime: Callable[..., Runtime], fake: FakeStream, moto_server: str, moto_client: S3Client, bucket: str,
    size: int,
) -> None:
    """S3 made the object but the answer to PutObject (or CompleteMultipartUpload) never came back, and
    the SDK sends the request again: a PutObject's retry is refused (412: the key is taken, by this
    very upload), and the transfer, comparing, finds its own bytes there; moto answers a completed
    upload's retried completion as done, as S3 does. Archived either way, never key_taken, and
    nothing is left pending."""
    with FaultProxy(moto_server) as proxy:
        lost = proxy.add(lose_answer(method="PUT" if size == MiB else "POST", path=r"/p/default/" if size == MiB
                                     else r"uploadId=", times=1))
        runtime = make_runtime(s3_table(proxy.url, bucket), transfer={"part_size": "5MiB",
                               "multipart_threshold": "5MiB"}, retry_backoff="0.1s", retry_backoff_max="0.1s")
        file = fake.add_recording("default:lost", os.urandom(size))
        tid = record(runtime, fake, file)
        with capture_logs() as logs:
            assert run_transfer(runtime, tid) == "archived" and len(lost.seen) == 1
        resolved = [e for e in logs if e["event"] == "object_already_archived"]
        assert len(resolved) == (1 if size == MiB else 0)
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and (transfer.sha256, transfer.reason) == (file.sha256, None)
    stored = moto_client.get_object(Bucket=bucket, Key=f"p/{transfer.key}")["Body"].read()
    assert stored == file.read_bytes() and pending_uploads(moto_client, bucket) == []
