"""Workers that die or freeze mid-transfer, and a storm of duplicate deliveries: real processes
(redis-server, `archiver web|worker|scheduler`, moto_server, the fake Stream behind a slow proxy).

What must hold whatever happens: every file archived once, byte-identical, under one key; the
ledger's result written by the worker that holds the lease; no multipart upload left pending.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from tests.chaos.conftest import (
    PREFIX,
    ChaosArchiver,
    deliver_slowly,
    pending_uploads,
    stored_keys,
    stored_sha256,
)
from tests.e2e.conftest import s3_storage
from tests.fakestream.events import send_webhook
from tests.fakestream.server import FakeStream, StoredFile
from tests.support.chaos import SlowProxy, events_named, wait_for, wait_for_transfer
from tests.support.chaos_report import ChaosReport
from tests.support.moto import s3_storage as moto_storage
from worker.storage.s3.storage import S3Storage

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024


def start_one_transfer(service: ChaosArchiver, fake: FakeStream, proxy: SlowProxy, file: StoredFile,
                       s3: S3Client, bucket: str) -> str:
    """Web, scheduler and worker-a; `file` delivered; worker-b started once worker-a holds the transfer;
    returns the transfer id once worker-a's multipart upload is under way. (A worker's start-up probe,
    `archiver storage check`, makes uploads of its own, under other keys.)"""
    url = service.start_web()
    assert deliver_slowly(fake, url, file, proxy).status_code == 202
    (transfer_id,) = service.ledger.ids()
    service.start_scheduler()  # after the delivery: its first reconciliation finds the file known
    service.start_worker("worker-a", concurrency=1)
    wait_for_transfer(service.ledger, transfer_id, lambda t: t.state == "transferring", 30, "worker-a's claim")
    service.start_worker("worker-b", concurrency=1)
    claimed = service.ledger.get(transfer_id)
    assert claimed is not None
    wait_for(lambda: PREFIX + claimed.key in pending_uploads(s3, bucket), 30, "worker-a's multipart upload")
    return transfer_id


def test_a_worker_killed_mid_upload_is_replaced_and_its_upload_cleaned_up(
    chaos_archiver: Callable[..., ChaosArchiver], slow_cdn: Callable[[int], SlowProxy], fake: FakeStream,
    moto_server: str, bucket: str, s3: S3Client, chaos_report: ChaosReport,
) -> None:
    """SIGKILL of a whole worker mid multipart upload: once its lease runs out the other worker
    archives the file; the dead worker's upload is aborted by the next attempt at the same key."""
    proxy = slow_cdn(8 * MiB)
    service = chaos_archiver([s3_storage(moto_server, bucket)], proxy, call_storage_key="")
    recording = fake.add_recording("default:killed", os.urandom(40 * MiB + 5))
    transfer_id = start_one_transfer(service, fake, proxy, recording, s3, bucket)

    before = service.ledger.get(transfer_id)
    assert before is not None and before.state == "transferring" and before.attempts == 1
    service.kill("worker-a")
    killed = time.monotonic()
    orphaned = [k for k in pending_uploads(s3, bucket) if k.startswith(PREFIX)]  # not worker-b's probe
    assert orphaned == [PREFIX + before.key], "the killed worker's upload is left pending"
    proxy.rate = 0  # the replacement may go at full speed

    done = wait_for_transfer(service.ledger, transfer_id, lambda t: t.state == "archived", 60, "archived")
    assert done.attempts >= 2 and done.epoch >= 2 and done.error is None
    assert (done.bytes, done.sha256) == (recording.size, recording.sha256)
    assert stored_keys(s3, bucket) == [PREFIX + done.key]
    assert stored_sha256(s3, bucket, done.key) == recording.sha256
    assert pending_uploads(s3, bucket) == []
    assert events_named(service.log_of("worker-b"), "storage_stale_upload_aborted")
    assert events_named(service.log_of("worker-b"), "recording_archived")
    assert fake.downloads_of(recording) == 2
    chaos_report.record("worker SIGKILLed mid multipart upload", sent=1, archived=1,
                        duplicates=len(stored_keys(s3, bucket)) - 1, recover_seconds=time.monotonic() - killed)


def test_a_frozen_worker_is_taken_over_after_its_lease_and_then_fenced_out(
    chaos_archiver: Callable[..., ChaosArchiver], slow_cdn: Callable[[int], SlowProxy], fake: FakeStream,
    moto_server: str, bucket: str, s3: S3Client, chaos_report: ChaosReport,
) -> None:
    """SIGSTOP of a whole worker: alive but silent. Another worker takes the transfer only once the
    lease ran out, and archives it; woken up, the first one finds its lease gone and writes nothing."""
    proxy = slow_cdn(6 * MiB)
    service = chaos_archiver([s3_storage(moto_server, bucket)], proxy, call_storage_key="")
    recording = fake.add_recording("default:frozen", os.urandom(20 * MiB + 3))
    transfer_id = start_one_transfer(service, fake, proxy, recording, s3, bucket)

    service.freeze("worker-a")
    frozen_at = time.monotonic()
    time.sleep(0.3)  # a renewal already on the wire lands
    frozen = service.ledger.get(transfer_id)
    assert frozen is not None and frozen.state == "transferring" and frozen.epoch == 1
    assert frozen.lease_until is not None and frozen.lease_owner is not None
    proxy.rate = 0

    taken = wait_for_transfer(service.ledger, transfer_id, lambda t: t.epoch == 2, 30, "the takeover")
    assert taken.updated_at is not None and taken.updated_at >= frozen.lease_until, (
        f"taken over at {taken.updated_at} while worker-a's lease ran until {frozen.lease_until}")
    assert taken.lease_owner != frozen.lease_owner
    done = wait_for_transfer(service.ledger, transfer_id, lambda t: t.state == "archived", 60, "archived")
    recovered = time.monotonic() - frozen_at

    service.thaw("worker-a")
    wait_for(lambda: events_named(service.log_of("worker-a"), "transfer_lease_lost"), 30,
             "worker-a to notice its lease is gone")
    time.sleep(1.0)  # anything worker-a would still write, it writes now
    after = service.ledger.get(transfer_id)
    assert after == done and after.raw == done.raw, "the fenced-out worker changed the ledger"
    assert (after.state, after.epoch, after.attempts, after.sha256) == ("archived", 2, 2, recording.sha256)
    assert events_named(service.log_of("worker-b"), "recording_archived")
    assert not events_named(service.log_of("worker-a"), "recording_archived")
    assert stored_keys(s3, bucket) == [PREFIX + done.key]
    assert stored_sha256(s3, bucket, done.key) == recording.sha256
    assert pending_uploads(s3, bucket) == []
    chaos_report.record("worker frozen (SIGSTOP) mid transfer, lease taken over", sent=1, archived=1,
                        duplicates=len(stored_keys(s3, bucket)) - 1, recover_seconds=recovered)


def test_a_new_multipart_upload_aborts_only_stale_uploads_of_exactly_its_key(
    moto_server: str, bucket: str, s3: S3Client,
) -> None:
    """What a killed worker left pending under the same key is aborted; an upload of a longer key
    sharing the prefix is not. A store that refuses to list uploads is asked once, and the write goes on."""
    storage = moto_storage(moto_server, bucket, "p/")
    stale = [s3.create_multipart_upload(Bucket=bucket, Key="p/rec.mp4")["UploadId"] for _ in range(2)]
    other = s3.create_multipart_upload(Bucket=bucket, Key="p/rec.mp4.other")["UploadId"]
    write_parts(storage, "rec.mp4", 11)
    assert [(u["Key"], u["UploadId"]) for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [
        ("p/rec.mp4.other", other)]
    assert all(u not in str(s3.list_multipart_uploads(Bucket=bucket)) for u in stale)

    listed: list[str] = []

    def refuse(**_: Any) -> Any:
        listed.append("ListMultipartUploads")
        error = {"Error": {"Code": "AccessDenied", "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": 403}}
        return AWSResponse("http://moto", 403, HTTPHeaders(), None), error

    storage.client.meta.events.register("before-call.s3.ListMultipartUploads", refuse)
    write_parts(storage, "second.mp4", 11)
    write_parts(storage, "third.mp4", 11)
    assert listed == ["ListMultipartUploads"]
    assert storage.stat("third.mp4").size == 11 * MiB
    storage.close()


def write_parts(storage: S3Storage, key: str, mib: int) -> None:
    with storage.open_writer(key, content_type="video/mp4", metadata={}) as writer:
        for _ in range(mib):
            writer.write(os.urandom(MiB))
        writer.commit()


def _failure_event(call_cid: str) -> dict[str, Any]:
    return {"type": "call.recording_failed", "created_at": time.time_ns(), "call_cid": call_cid,
            "egress_id": "EG_broken", "recording_type": "composite", "error": "egress crashed"}


def test_duplicate_and_out_of_order_deliveries_under_load_give_one_transfer_each(
    chaos_archiver: Callable[..., ChaosArchiver], fake: FakeStream, moto_server: str, bucket: str,
    s3: S3Client, chaos_report: ChaosReport,
) -> None:
    """20 concurrent deliveries of each of 10 recordings, shuffled with a transcription's and a
    failure's, with two workers (call routing on): one transfer, one object, one download per file."""
    service = chaos_archiver([s3_storage(moto_server, bucket)])
    url = service.start_web()
    service.start_scheduler()
    service.start_worker("worker-a", concurrency=2)
    service.start_worker("worker-b", concurrency=2)
    recordings = [fake.add_recording(f"default:storm-{n % 5}", os.urandom(MiB + n)) for n in range(10)]
    transcription = fake.add_transcription("default:storm-0", b'{"type":"speech","text":"hi"}\n' * 2000)
    files = [*recordings, transcription]
    deliveries: list[StoredFile | None] = [f for f in files for _ in range(20)] + [None] * 5  # None: the failure
    random.Random(7).shuffle(deliveries)
    failure = json.dumps(_failure_event("default:storm-1"), separators=(",", ":")).encode()

    def deliver(file: StoredFile | None) -> tuple[str, int]:
        if file is None:  # Stream retrying one failure event: the same webhook id every time
            response = send_webhook(url, failure, api_key=fake.api_key, api_secret=fake.api_secret,
                                    webhook_id="failure-1")
            return "failure", response.status_code
        return file.filename, fake.deliver(url, file).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(deliver, deliveries))
    for file in files:  # the first to record it gets 202; the scheduler's reconciliation may beat them all
        assert sorted(s for name, s in answers if name == file.filename) in ([200] * 19 + [202], [200] * 20)
    assert [s for name, s in answers if name == "failure"] == [200] * 5

    archived = service.wait_for_states(len(files), timeout=60)
    assert len(service.ledger.ids()) == len(files) == len(archived)
    assert stored_keys(s3, bucket) == sorted(PREFIX + t["key"] for t in archived)
    for file in files:
        (entry,) = [t for t in archived if t["filename"] == file.filename]
        assert stored_sha256(s3, bucket, entry["key"]) == file.sha256 == entry["sha256"]
        assert fake.downloads_of(file) == 1, file.filename
    noted = service.ledger.stream_failures()
    assert noted and {(n["call_cid"], n["egress_id"]) for n in noted} == {("default:storm-1", "EG_broken")}
    assert pending_uploads(s3, bucket) == []
    chaos_report.record("the same webhooks 20x, concurrent and out of order", sent=len(files),
                        archived=len(archived), duplicates=len(stored_keys(s3, bucket)) - len(files),
                        recover_seconds=time.monotonic() - started)
