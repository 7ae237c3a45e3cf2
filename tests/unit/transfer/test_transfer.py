"""One transfer run in-process (worker/transfer/run.py): real Redis, local disk, the fake Stream's CDN."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakestream.models import StoredFile
from tests.fakestream.server import FakeStream
from worker.clock import now_ms
from worker.errors import CopyRefused, LeaseLost
from worker.intake.record import record_routes
from worker.intake.webhook import ready_file
from worker.ledger.lease import Heartbeat
from worker.runtime import Runtime
from worker.storage.base import Capabilities, StoredObject
from worker.storage.local.storage import LocalStorage
from worker.transfer.run import run_transfer


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime], tmp_path: Path) -> Runtime:
    disk = {"name": "disk", "storage_type": "local", "bucket": str(tmp_path / "archive")}
    return make_runtime(disk, retry_backoff="10s", retry_backoff_max="1m")


def record(runtime: Runtime, fake: FakeStream, file: StoredFile) -> str:
    stream_file = ready_file(fake.event_for(file))
    assert stream_file is not None
    (tid,) = record_routes(runtime.archive, runtime.ledger, stream_file).transfer_ids
    return tid


def test_a_transfer_archives_and_a_second_run_does_nothing(runtime: Runtime, fake: FakeStream,
                                                            tmp_path: Path) -> None:
    file = fake.add_recording("default:once", b"abc" * 1000)
    tid = record(runtime, fake, file)
    assert run_transfer(runtime, tid) == "archived"
    assert run_transfer(runtime, tid) == "archived"
    assert fake.downloads_of(file) == 1
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and (transfer.bytes, transfer.sha256) == (file.size, file.sha256)
    assert (tmp_path / "archive" / transfer.key).read_bytes() == file.read_bytes()


def test_a_transient_error_backs_off_in_the_ledger(runtime: Runtime, fake: FakeStream) -> None:
    file = fake.add_recording("default:retry", b"x" * 100)
    tid = record(runtime, fake, file)
    fake.fail_next(file.filename, 500)
    before = now_ms()
    assert run_transfer(runtime, tid) == "retry"
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and transfer.state == "queued" and "answered 500" in (transfer.error or "")
    assert transfer.next_attempt_at is not None
    wait_ms = transfer.next_attempt_at.timestamp() * 1000 - before
    assert 5_000 - 50 <= wait_ms <= 10_000 + 1_000
    due = runtime.ledger.redis.zscore(runtime.ledger.keys.due, tid)
    assert due == pytest.approx(transfer.next_attempt_at.timestamp() * 1000, abs=2)
    assert run_transfer(runtime, tid) == "not_due"


def test_a_file_gone_after_its_deadline_is_lost(runtime: Runtime, fake: FakeStream) -> None:
    ended = fake.add_recording("default:old", b"x" * 10, end_time=datetime.now(UTC) - timedelta(days=15))
    tid = record(runtime, fake, ended)
    fake.delete_file(ended)
    assert run_transfer(runtime, tid) == "lost"
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and transfer.state == "lost" and "deadline" in (transfer.error or "")


def test_a_file_gone_before_its_deadline_is_retried(runtime: Runtime, fake: FakeStream) -> None:
    file = fake.add_recording("default:gone", b"x" * 10)
    tid = record(runtime, fake, file)
    fake.delete_file(file)
    assert run_transfer(runtime, tid) == "retry"


def test_heartbeat_notices_a_takeover(runtime: Runtime, fake: FakeStream) -> None:
    tid = record(runtime, fake, fake.add_recording("default:hb", b"x"))
    claim = runtime.ledger.claim(tid, "me", 300)
    with Heartbeat(runtime.ledger, tid, claim.token, 300) as lease:
        lease.check()
        runtime.ledger.redis.hset(f"archiver:transfer:{tid}", "lease_until", 0)  # as if it ran out
        assert runtime.ledger.claim(tid, "other", 60_000).claimed
        time.sleep(0.4)
        with pytest.raises(LeaseLost, match="taken over"):
            lease.check()


def test_a_storage_this_worker_does_not_know_is_retried_not_failed(
    runtime: Runtime, fake: FakeStream, make_settings: Any, tmp_path: Path
) -> None:
    """A rolling deploy: a worker still on the old configuration meets a transfer to a storage only
    the new one has. It backs off (transient), and a worker that knows the storage archives it."""
    file = fake.add_recording("default:moved", b"x" * 10)
    tid = record(runtime, fake, file)
    old = Runtime.from_settings(make_settings(
        download_hosts=[fake.cdn_host], default_storage="elsewhere", retry_backoff="0.2s", retry_backoff_max="0.2s",
        storages=[{"name": "elsewhere", "storage_type": "local", "bucket": str(tmp_path / "elsewhere")}],
    ))
    try:
        assert run_transfer(old, tid) == "retry"
    finally:
        old.close()
    waiting = runtime.ledger.get(tid)
    assert waiting is not None and (waiting.state, waiting.attempts, waiting.reason) == ("queued", 1, "StorageUnknown")
    assert "no storage named 'disk'" in (waiting.error or "")
    assert fake.downloads_of(file) == 0
    time.sleep(0.25)
    assert run_transfer(runtime, tid) == "archived"


def test_a_storage_that_exists_but_cannot_be_built_fails_the_transfer_with_the_reason(
    runtime: Runtime, fake: FakeStream, make_settings: Any, tmp_path: Path
) -> None:
    tid = record(runtime, fake, fake.add_recording("default:broken", b"x"))
    broken = Runtime.from_settings(make_settings(
        download_hosts=[fake.cdn_host], default_storage="disk",
        storages=[{"name": "disk", "storage_type": "no_such_backend", "bucket": str(tmp_path / "x")}],
    ))
    try:
        assert run_transfer(broken, tid) == "failed"
    finally:
        broken.close()
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and transfer.state == "failed" and transfer.reason == "other"
    assert "storage 'disk' cannot be used" in (transfer.error or "")


class PullingStorage(LocalStorage):
    """A local store that can fetch a URL itself, like Azure's Put Block From URL."""

    capabilities = Capabilities(server_side_copy=True)

    def copy_from_url(self, key: str, url: str, *, size: int, content_type: str,
                      metadata: Mapping[str, str], overwrite: bool = False) -> StoredObject:
        with self.open_writer(key, content_type=content_type, metadata=metadata, overwrite=overwrite) as writer:
            writer.write(httpx.get(url).content)
            return writer.commit()


class RefusingStorage(LocalStorage):
    capabilities = Capabilities(server_side_copy=True)

    def copy_from_url(self, key: str, url: str, *, size: int, content_type: str,
                      metadata: Mapping[str, str], overwrite: bool = False) -> StoredObject:
        raise CopyRefused("this store cannot reach the source")


class LyingStorage(LocalStorage):
    """Reports a checksum that does not match what it was sent."""

    def stat(self, key: str) -> StoredObject:
        stored = super().stat(key)
        return StoredObject(stored.key, stored.size, stored.metadata, stored.content_type, None, {"sha256": "0" * 64})


@pytest.mark.parametrize("kind", [PullingStorage, RefusingStorage])
def test_server_side_copy_and_its_fallback_to_streaming(runtime: Runtime, fake: FakeStream, tmp_path: Path,
                                                        kind: type[LocalStorage]) -> None:
    """The store pulls the file itself; or, when it refuses, the worker streams it: once either way."""
    runtime._storages["disk"] = kind("disk", tmp_path / "archive")
    file = fake.add_recording("default:pull", os.urandom(50_000))
    tid = record(runtime, fake, file)
    assert run_transfer(runtime, tid) == "archived"
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and transfer.sha256 == file.sha256
    assert (tmp_path / "archive" / transfer.key).read_bytes() == file.read_bytes()
    assert fake.downloads_of(file) == 1


def test_a_checksum_the_store_reports_wrong_fails_verification(runtime: Runtime, fake: FakeStream,
                                                               tmp_path: Path) -> None:
    runtime._storages["disk"] = LyingStorage("disk", tmp_path / "archive")
    tid = record(runtime, fake, fake.add_recording("default:liar", b"abc"))
    assert run_transfer(runtime, tid) == "retry"
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and "has sha256 000" in (transfer.error or "")
