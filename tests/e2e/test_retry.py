"""`archiver transfers retry`: a permanent refusal waits for the operator, then goes through."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from tests.e2e.conftest import Archiver, s3_storage
from tests.fakestream.server import FakeStream
from tests.support.moto import create_bucket, s3_client

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("how", ["id", "state"])
def test_a_failed_transfer_is_retried_by_command_once_the_cause_is_fixed(
    archiver: Callable[..., Archiver], fake: FakeStream, moto_server: str, how: str
) -> None:
    bucket = f"created-later-{how}"
    service = archiver([s3_storage(moto_server, bucket)], call_storage_key="")
    url = service.start_all()
    recording = fake.add_recording("default:retry-me", os.urandom(4096))
    assert fake.deliver(url, recording).status_code == 202
    (failed,) = service.wait_for_states(1, state="failed")
    assert "NoSuchBucket" in failed["error"]

    client = s3_client(moto_server)
    create_bucket(client, bucket)  # the operator fixes the cause
    args = [failed["id"]] if how == "id" else ["--state", "failed"]
    result = service.cli("transfers", "retry", *args)
    assert result.returncode == 0 and "queued 1 transfer(s) again" in result.stdout
    (entry,) = service.wait_for_states(1)
    assert entry["id"] == failed["id"] and entry["error"] is None
    body = client.get_object(Bucket=bucket, Key=f"recordings/{entry['key']}")["Body"].read()
    assert body == recording.read_bytes()
    again = service.cli("transfers", "retry", failed["id"])
    assert again.returncode == 1 and "not failed or lost" in again.stderr


def test_retry_needs_ids_or_a_state(archiver: Callable[..., Archiver], moto_server: str) -> None:
    service = archiver([s3_storage(moto_server, "whatever")])
    assert service.cli("transfers", "retry").returncode == 2
    assert service.cli("transfers", "retry", "--state", "archived").returncode == 2
