"""A storage that fails, for a while or for good, behind the fault proxy: real `archiver` processes
(web, worker, scheduler) archive from the fake Stream into moto_server through `FaultProxy`.

Every S3 request the worker makes goes through the proxy (the storage's ``s3_custom_endpoint_url``);
the download from the fake CDN does not. botocore itself tries each request three times
(``retries.total_max_attempts``), so a fault must outlast three tries to reach the ledger.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mypy_boto3_s3 import S3Client

from tests.chaos.conftest import BASE, CAP, is_manifest
from tests.e2e.conftest import Archiver, s3_storage, sha256
from tests.fakestream.server import FakeStream
from tests.support.chaos_report import ChaosReport
from tests.support.faultproxy import FaultProxy, Rule, answer, reset
from tests.support.moto import ACCESS_KEY, SECRET_KEY, create_bucket
from tests.support.processes import wait_until
from worker.ledger.models import Transfer
from worker.ledger.store import Ledger

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
# The recordings' requests only (the worker's boot probe, archiver-check-*, is left alone):
# PutObject of a data file (no query string: UploadPart has ?partNumber=); not the sessions' manifests
PUT_OBJECT = r"/recordings/default/(?![^?]*/manifest_)[^?]*$"
UPLOAD_PART = r"/recordings/default/.*[?&]partNumber="
COMPLETE = r"/recordings/default/.*[?&]uploadId="  # POST: CompleteMultipartUpload
SLOW_DOWN = "Please reduce your request rate."
SLACK = 0.05  # seconds: between the worker's clock reading and the ledger's, in one finish


def stored(client: S3Client, bucket: str, entry: dict[str, Any]) -> bytes:
    return client.get_object(Bucket=bucket, Key=f"recordings/{entry['key']}")["Body"].read()


def keys_in(client: S3Client, bucket: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []) if not is_manifest(o["Key"])]


def pending_uploads(client: S3Client, bucket: str) -> list[str]:
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def only_transfer(ledger: Ledger) -> str:
    wait_until(lambda: len(ledger.ids()) == 1, timeout=15, message="the transfer in the ledger")
    (tid,) = ledger.ids()
    return tid


def watch_retries(ledger: Ledger, tid: str, count: int, timeout: float = 45.0) -> list[Transfer]:
    """The transfer as each of its first `count` attempts left it (back in ``queued``, waiting), read
    from the ledger between attempts; it must never be anything but queued or transferring meanwhile."""
    seen: dict[int, Transfer] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < count:
        transfer = ledger.get(tid)
        assert transfer is not None and transfer.state in ("queued", "transferring"), transfer
        if transfer.state == "queued" and transfer.attempts > 0:
            seen.setdefault(transfer.attempts, transfer)
        assert time.monotonic() < deadline, f"saw attempts {sorted(seen)} only"
        time.sleep(0.01)  # the shortest wait is 150 ms
    return [seen[n] for n in sorted(seen)][:count]


def wait_of(transfer: Transfer) -> float:
    assert transfer.next_attempt_at is not None and transfer.updated_at is not None
    return (transfer.next_attempt_at - transfer.updated_at).total_seconds()


def test_storage_errors_for_a_while_are_retried_with_backoff_until_both_objects_land(
    service: Callable[..., Archiver], fake: FakeStream, moto_server: str, moto_client: S3Client,
    chaos_report: ChaosReport,
) -> None:
    """The first PutObject requests answered 503 SlowDown then reset, the first UploadParts 500, the
    first CompleteMultipartUploads reset (more than botocore's own three tries absorb): a single-request
    object and a three-part one both back off in the ledger and try again, then land byte-identical, once
    each, with attempts > 1 and no error left; the failed attempt's multipart upload was aborted."""
    bucket = create_bucket(moto_client)
    with FaultProxy(moto_server) as proxy:
        rules = [
            proxy.add(answer(503, "SlowDown", SLOW_DOWN, method="PUT", path=PUT_OBJECT, times=2)),
            proxy.add(reset(method="PUT", path=PUT_OBJECT, times=2)),
            proxy.add(answer(500, "InternalError", "We encountered an internal error.", method="PUT",
                             path=UPLOAD_PART, times=3)),
            proxy.add(reset(method="POST", path=COMPLETE, times=3)),
        ]
        archiver = service([s3_storage(proxy.url, bucket)])
        recordings = {cid: fake.add_recording(cid, os.urandom(size))
                      for cid, size in [("default:single", 256 * 1024), ("default:multipart", 12 * MiB)]}
        started = time.monotonic()
        for recording in recordings.values():
            assert fake.deliver(archiver.webhook_url, recording).status_code == 202
        entries = {e["call_cid"]: e for e in archiver.wait_for_states(2, timeout=60)}
        recovered = time.monotonic() - started

        for cid, recording in recordings.items():
            entry = entries[cid]
            assert entry["attempts"] > 1 and entry["error"] is None, entry
            assert entry["sha256"] == sha256(recording.read_bytes())
            assert stored(moto_client, bucket, entry) == recording.read_bytes()
        assert [len(rule.seen) for rule in rules] == [rule.times for rule in rules]
        assert sum(r.method == "POST" and r.target.endswith("?uploads") for r in proxy.requests) >= 2
    assert sorted(keys_in(moto_client, bucket)) == sorted(f"recordings/{e['key']}" for e in entries.values())
    assert pending_uploads(moto_client, bucket) == []
    assert "transfer_retry_scheduled" in archiver.logs()
    chaos_report.record("storage 500/503/SlowDown/resets for a while", sent=2, archived=len(entries),
                        duplicates=len(keys_in(moto_client, bucket)) - len(entries), recover_seconds=recovered)


def test_a_storage_that_stays_down_keeps_the_file_queued_and_at_risk_until_it_heals(
    service: Callable[..., Archiver], fake: FakeStream, moto_server: str, moto_client: S3Client, ledger: Ledger,
    chaos_report: ChaosReport,
) -> None:
    """A store answering 503 SlowDown to everything: the transfer stays ``queued`` with its last error,
    its waits growing (each within its jittered step, the first three non-decreasing, none past
    retry_backoff_max), never ``failed``; a file an hour from Stream's deletion is counted at risk by
    ``archiver reconcile``; once the store heals the file is archived and no longer at risk."""
    bucket = create_bucket(moto_client)
    with FaultProxy(moto_server) as proxy:
        down = proxy.add(answer(503, "SlowDown", SLOW_DOWN))
        archiver = service([s3_storage(proxy.url, bucket)], at_risk_margin="48h")
        ended = datetime.now(UTC) - timedelta(days=13, hours=23)
        recording = fake.add_recording("default:near-deadline", os.urandom(64 * 1024), end_time=ended)
        assert fake.deliver(archiver.webhook_url, recording).status_code == 202
        tid = only_transfer(ledger)

        retries = watch_retries(ledger, tid, 4)
        waits = [wait_of(t) for t in retries]
        for attempt, (transfer, wait) in enumerate(zip(retries, waits, strict=True), start=1):
            step = min(CAP, BASE * 2 ** (attempt - 1))
            assert transfer.attempts == attempt and step / 2 - SLACK <= wait <= step, waits
            assert transfer.error is not None and "SlowDown (HTTP 503)" in transfer.error
        assert waits[0] <= waits[1] <= waits[2] and max(waits) <= CAP, waits
        moments = [t.next_attempt_at for t in retries]
        assert moments == sorted(moments) and len(set(moments)) == len(moments)
        assert len(down.seen) >= 3 * len(retries)  # botocore's own three tries per attempt

        ledger.redis.delete(f"{ledger.prefix}at_risk")
        result = archiver.cli("reconcile")
        assert result.returncode == 0, result.stderr
        assert "1 file(s) at risk" in result.stdout, result.stdout
        assert int(ledger.redis.get(f"{ledger.prefix}at_risk") or 0) >= 1
        flagged = [json.loads(line) for line in result.stderr.splitlines() if '"recording_at_risk"' in line]
        assert [(f["call_cid"], f["storage"]) for f in flagged] == [(recording.call_cid, "s3")], result.stderr
        transfer = ledger.get(tid)
        assert transfer is not None and transfer.state in ("queued", "transferring") and transfer.error

        proxy.clear()  # the store is back
        healed = time.monotonic()
        (entry,) = archiver.wait_for_states(1, timeout=30)
        recovered = time.monotonic() - healed
    assert entry["attempts"] > len(retries) and entry["error"] is None
    chaos_report.record("storage down until it heals (file near its deadline)", sent=1, archived=1,
                        duplicates=len(keys_in(moto_client, bucket)) - 1, recover_seconds=recovered)
    assert stored(moto_client, bucket, entry) == recording.read_bytes()
    again = archiver.cli("reconcile")
    assert again.returncode == 0 and "0 file(s) at risk" in again.stdout, again.stdout
    assert ledger.redis.get(f"{ledger.prefix}at_risk") == "0"


def test_a_permanent_refusal_fails_after_one_attempt_until_retried_by_command(
    service: Callable[..., Archiver], fake: FakeStream, moto_server: str, moto_client: S3Client,
    chaos_report: ChaosReport,
) -> None:
    """403 InvalidAccessKeyId (its message naming the access key), 403 AccessDenied, and a bucket that
    does not exist (real moto): each transfer is ``failed`` after one attempt and one request, with the
    S3 code in its error and no credential; it stays so; after the causes are fixed,
    ``archiver transfers retry --state failed`` archives all three."""
    keys_bucket, denied_bucket = create_bucket(moto_client), create_bucket(moto_client)
    missing_bucket = f"chaos-missing-{uuid.uuid4().hex[:12]}"
    with FaultProxy(moto_server) as proxy:
        refusals: dict[str, Rule] = {
            "keys": proxy.add(answer(403, "InvalidAccessKeyId",
                                     f"The AWS Access Key Id {ACCESS_KEY} does not exist in our records.",
                                     path=f"^/{keys_bucket}/")),
            "denied": proxy.add(answer(403, "AccessDenied", "Access Denied", path=f"^/{denied_bucket}/")),
        }
        storages = [s3_storage(proxy.url, keys_bucket, "keys"), s3_storage(proxy.url, denied_bucket, "denied"),
                    s3_storage(moto_server, missing_bucket, "missing")]
        archiver = service(storages, call_types={name: name for name in ("keys", "denied", "missing")})
        recordings = {name: fake.add_recording(f"{name}:refused", os.urandom(64 * 1024))
                      for name in ("keys", "denied", "missing")}
        for recording in recordings.values():
            assert fake.deliver(archiver.webhook_url, recording).status_code == 202
        archiver.wait_for_states(3, state="failed", timeout=30)
        time.sleep(4 * BASE)  # a few sweeps: nothing picks a failed transfer up again

        failed = {e["storage"]: e for e in archiver.transfers("failed")}
        assert sorted(failed) == ["denied", "keys", "missing"]
        expected = {"keys": "InvalidAccessKeyId (HTTP 403)", "denied": "AccessDenied (HTTP 403)",
                    "missing": "NoSuchBucket (HTTP 404)"}
        for name, entry in failed.items():
            assert entry["attempts"] == 1 and expected[name] in entry["error"], entry
            assert ACCESS_KEY not in entry["error"] and SECRET_KEY not in entry["error"]
        assert "Access Key Id *** does not exist" in failed["keys"]["error"]
        for name, rule in refusals.items():  # one attempt, one request: botocore does not retry a 403
            assert [r.method for r in rule.seen if f"/recordings/{name}/refused/" in r.target] == ["PUT"]

        proxy.clear()  # the operator fixes the keys and the policy…
        create_bucket(moto_client, missing_bucket)  # …and creates the bucket
        retried = time.monotonic()
        result = archiver.cli("transfers", "retry", "--state", "failed")
        assert result.returncode == 0 and "queued 3 transfer(s) again" in result.stdout, result.stdout
        archived = {e["storage"]: e for e in archiver.wait_for_states(3, timeout=30)}
        recovered = time.monotonic() - retried
    buckets = {"keys": keys_bucket, "denied": denied_bucket, "missing": missing_bucket}
    for name, entry in archived.items():
        assert entry["attempts"] == 2 and entry["error"] is None
        assert stored(moto_client, buckets[name], entry) == recordings[name].read_bytes()
    duplicates = sum(len(keys_in(moto_client, bucket)) for bucket in buckets.values()) - len(archived)
    chaos_report.record("storage refuses (credentials, permission, missing bucket), then retry by command",
                        sent=3, archived=len(archived), duplicates=duplicates, recover_seconds=recovered)
