"""A transfer that outlasts the broker's visibility timeout: its message is delivered again (kombu#337)
while it still runs. Real processes (redis-server, `archiver web|worker|scheduler`, moto_server, the
fake Stream behind a slow proxy); the timeout is made to pass by ageing kombu's record of the unacked
message, as hours of transfer would.

No time limit ends the transfer (it renews its lease), and the second delivery finds the lease live
and does nothing: one download, one upload, one attempt.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
import redis

from config.celery import TRANSFER_QUEUE, VISIBILITY_TIMEOUT
from tests.chaos.conftest import PREFIX, ChaosArchiver, deliver_slowly, stored_keys, stored_sha256
from tests.e2e.conftest import s3_storage
from tests.fakestream.server import FakeStream
from tests.support.chaos import SlowProxy, events_named, wait_for, wait_for_transfer
from tests.support.chaos_report import ChaosReport

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024


def busy_answers(service: ChaosArchiver, transfer_id: str) -> int:
    return sum(1 for e in events_named(service.log_of("worker"), "transfer_not_claimed")
               if e.get("transfer_id") == transfer_id and e.get("status") == "busy")


def test_a_message_redelivered_after_the_visibility_timeout_does_nothing_while_the_lease_is_live(
    chaos_archiver: Callable[..., ChaosArchiver], slow_cdn: Callable[[int], SlowProxy], fake: FakeStream,
    moto_server: str, bucket: str, s3: S3Client, redis_url: str, chaos_report: ChaosReport,
) -> None:
    proxy = slow_cdn(MiB)
    service = chaos_archiver([s3_storage(moto_server, bucket)], proxy, call_storage_key="")
    recording = fake.add_recording("default:long", os.urandom(40 * MiB + 1))
    url = service.start_web()
    assert deliver_slowly(fake, url, recording, proxy).status_code == 202
    (transfer_id,) = service.ledger.ids()
    service.start_scheduler()
    service.start_worker("worker", concurrency=2)  # a free pool process to take the redelivery
    wait_for_transfer(service.ledger, transfer_id, lambda t: t.state == "transferring", 30, "the claim")

    broker = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        # Settled: only the running task's message unacked, none queued (an early sweep may have sent a
        # second one, answered `busy` already); the sweep sends no more while the lease is renewed.
        wait_for(lambda: broker.zcard("unacked_index") == 1 and broker.llen(TRANSFER_QUEUE) == 0, 20,
                 "only the running task's message left")
        time.sleep(1.0)
        before = busy_answers(service, transfer_id)
        unacked = broker.zrange("unacked_index", 0, -1, withscores=True)
        aged = {tag: score - VISIBILITY_TIMEOUT - 60 for tag, score in unacked}
        broker.zadd("unacked_index", aged)  # as if the transfer had run for longer than the timeout
        aged_at = time.monotonic()
        wait_for(lambda: busy_answers(service, transfer_id) > before, 40,
                 "the worker's restore of the unacked message, and its second delivery")
    finally:
        broker.close()
    redelivered = time.monotonic() - aged_at
    assert busy_answers(service, transfer_id) == before + 1, "delivered once more, answered busy once"
    running = service.ledger.get(transfer_id)
    assert running is not None and (running.state, running.attempts, running.epoch) == ("transferring", 1, 1)

    proxy.rate = 0
    done = wait_for_transfer(service.ledger, transfer_id, lambda t: t.state == "archived", 60, "archived")
    assert (done.attempts, done.epoch, done.error) == (1, 1, None)
    assert fake.downloads_of(recording) == 1
    assert stored_keys(s3, bucket) == [PREFIX + done.key]
    assert stored_sha256(s3, bucket, done.key) == recording.sha256
    assert len(events_named(service.log_of("worker"), "transfer_started")) == 1
    chaos_report.record("message redelivered after the visibility timeout, lease live", sent=1, archived=1,
                        duplicates=len(stored_keys(s3, bucket)) - 1,
                        recover_seconds=redelivered)
