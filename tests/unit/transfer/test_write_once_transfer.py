"""A transfer into a storage whose writes carry retention: the recording is locked from its upload on, the
session's manifest (rewritten as the session fills) is not. Real Redis, the fake Stream, moto_server with
an Object Lock bucket."""

from __future__ import annotations

import os
from collections.abc import Callable

from mypy_boto3_s3 import S3Client

from tests.fakestream.server import FakeStream
from tests.support.moto import ACCESS_KEY, REGION, SECRET_KEY, create_bucket
from tests.unit.transfer.test_transfer import record
from worker.runtime import Runtime
from worker.transfer.run import run_transfer


def test_the_recording_is_locked_and_its_manifest_is_not(make_runtime: Callable[..., Runtime], fake: FakeStream,
                                                         moto_server: str, moto_client: S3Client) -> None:
    bucket = create_bucket(moto_client, object_lock=True)
    table = {"name": "worm", "storage_type": "s3", "bucket": bucket, "path": "p/",
             "aws_s3": {"s3_region": REGION, "s3_api_key": ACCESS_KEY, "s3_secret": SECRET_KEY,
                        "s3_custom_endpoint_url": moto_server, "s3_object_lock_mode": "GOVERNANCE",
                        "s3_object_lock_days": 30}}  # fmt: skip
    runtime = make_runtime(table)
    file = fake.add_recording("default:worm", os.urandom(40_000))
    tid = record(runtime, fake, file)
    assert run_transfer(runtime, tid) == "archived"
    transfer = runtime.ledger.get(tid)
    assert transfer is not None
    head = moto_client.head_object(Bucket=bucket, Key=f"p/{transfer.key}")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    manifests = [o["Key"] for o in moto_client.list_objects_v2(Bucket=bucket)["Contents"] if "/manifest_" in o["Key"]]
    assert len(manifests) == 1
    assert "ObjectLockMode" not in moto_client.head_object(Bucket=bucket, Key=manifests[0])
