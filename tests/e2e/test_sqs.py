"""SQS intake end to end: a recording sent only through an SQS queue is archived, no webhook at all.

Real processes: redis-server, moto_server's SQS, `archiver worker`, `archiver scheduler` and
`archiver sqs`, and the fake Stream (its API for call-level routing, its CDN for the download).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest

from tests.e2e.conftest import Archiver, local_storage
from tests.fakestream.server import FakeStream
from tests.support.moto import ACCESS_KEY, REGION, SECRET_KEY
from tests.support.processes import wait_until

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024


def test_a_recording_sent_only_through_sqs_is_archived_and_its_message_deleted(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path, moto_server: str
) -> None:
    sqs = boto3.session.Session().client("sqs", region_name=REGION, endpoint_url=moto_server,
                                         aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    queue = sqs.create_queue(QueueName=f"stream-events-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    root = tmp_path / "archive"
    service = archiver([local_storage(root)])
    service.env.update({"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                        "AWS_DEFAULT_REGION": REGION})
    service.start_worker()
    service.start_scheduler()
    service.start("sqs", "sqs", "--queue-url", queue, "--region", REGION, "--endpoint-url", moto_server,
                  "--wait-seconds", "1")

    recording = fake.add_recording("default:via-sqs", os.urandom(2 * MiB + 5))
    event = json.dumps(fake.event_for(recording)).encode()
    sqs.send_message(QueueUrl=queue, MessageBody=base64.b64encode(gzip.compress(event)).decode())

    (entry,) = service.wait_for_states(1)
    assert (root / entry["key"]).read_bytes() == recording.read_bytes()
    assert (entry["bytes"], entry["sha256"]) == (recording.size, recording.sha256)

    def queue_is_empty() -> bool:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=names)["Attributes"]
        return all(attrs[name] == "0" for name in names)

    wait_until(queue_is_empty, timeout=10, message="the message to be deleted")
    logs = service.logs()
    assert "sqs_message_recorded" in logs and "webhook_recorded" not in logs
    for secret in (SECRET_KEY, "Signature=", "Expires="):
        assert secret not in logs, f"{secret!r} leaked into a log line"
    sqs.close()
