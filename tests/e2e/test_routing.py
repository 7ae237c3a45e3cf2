"""Routing end to end: per call (GetCall custom data), per call type, default, stream-s3, fan-out."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Archiver, local_storage, s3_storage
from tests.fakestream.server import FakeStream
from tests.support import azurite as az
from tests.support import gcs
from tests.support.moto import s3_client
from tests.support.processes import wait_until
from worker.edge.web import paths

pytestmark = pytest.mark.e2e


def test_call_custom_data_then_call_type_then_default_choose_the_storage(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path, moto_server: str, bucket: str
) -> None:
    service = archiver(
        [local_storage(tmp_path / "disk"), s3_storage(moto_server, bucket), local_storage(tmp_path / "alt", "alt")],
        call_types={"allhands": "alt", "livestream": "stream-s3"},
    )
    url = service.start_all()
    fake.add_call("default", "legal", custom={"archive_storage": "s3"})
    fake.add_call("allhands", "q4", custom={"archive_storage": ["s3", "disk"]})
    by_call = fake.add_recording("default:legal", os.urandom(1000))
    fan_out = fake.add_recording("allhands:q4", os.urandom(2000))
    by_type = fake.add_recording("allhands:weekly", os.urandom(3000))
    by_default = fake.add_recording("default:plain", os.urandom(4000))
    skipped = fake.add_recording("livestream:launch", os.urandom(10))
    for file in (by_call, fan_out, by_type, by_default, skipped):
        assert fake.deliver(url, file).status_code == 202

    archived = service.wait_for_states(5)
    where = {(t["filename"], t["storage"]) for t in archived}
    assert where == {(by_call.filename, "s3"), (fan_out.filename, "s3"), (fan_out.filename, "disk"),
                     (by_type.filename, "alt"), (by_default.filename, "disk")}
    (skip,) = service.transfers("skipped")
    assert skip["filename"] == skipped.filename and "call_types.livestream" in skip["error"]
    body = s3_client(moto_server).get_object(Bucket=bucket, Key=f"recordings/default/legal/{by_call.filename}")
    assert body["Body"].read() == by_call.read_bytes()
    assert (tmp_path / "alt" / "allhands" / "weekly" / by_type.filename).read_bytes() == by_type.read_bytes()
    assert fake.downloads_of(fan_out) == 2


def test_fan_out_with_one_destination_failing_still_archives_the_other(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path, moto_server: str
) -> None:
    service = archiver([local_storage(tmp_path / "disk"), s3_storage(moto_server, "bucket-that-is-not-there")],
                       default_storage=["disk", "s3"])
    url = service.start_all()
    recording = fake.add_recording("default:both", os.urandom(5000))
    assert fake.deliver(url, recording).status_code == 202
    (ok,) = service.wait_for_states(1)
    (failed,) = service.wait_for_states(1, state="failed")
    assert (ok["storage"], failed["storage"]) == ("disk", "s3")
    assert "NoSuchBucket" in failed["error"]


def test_stream_api_down_falls_back_to_the_call_type_route_after_the_lookup_timeout(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path
) -> None:
    service = archiver([local_storage(tmp_path / "disk")], call_lookup_timeout="5s")
    url = service.start_all()
    # The lookup's 5 s run from the delivery: a worker still starting (a loaded machine) would let
    # them pass before its first lookup, and the retry this test looks for would never happen.
    worker_log = service.log_dir / "worker.log"
    wait_until(lambda: " ready." in worker_log.read_text(errors="replace"), timeout=60, message="the worker ready")
    fake.fail_next_api("/video/call/", 503, count=1000)
    recording = fake.add_recording("default:api-down", os.urandom(100))
    assert fake.deliver(url, recording).status_code == 202
    (entry,) = service.wait_for_states(1, timeout=60)
    assert entry["storage"] == "disk"
    logs = service.logs()
    assert "call_lookup_retry" in logs and "call_lookup_gave_up" in logs


def test_a_file_waiting_for_its_call_lookup_is_listed_as_routing_with_the_reason_then_archived(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path
) -> None:
    """While Stream's API fails, the file shows as `routing` (list, show, /metrics); once it answers,
    the call's own route is taken and the file archived."""
    service = archiver([local_storage(tmp_path / "disk"), local_storage(tmp_path / "alt", "alt")],
                       call_lookup_timeout="10m")
    url = service.start_all()
    fake.fail_next_api("/video/call/", 503, count=100_000)
    fake.add_call("default", "waits", custom={"archive_storage": "alt"})
    recording = fake.add_recording("default:waits", os.urandom(100))
    delivered = fake.deliver(url, recording)
    assert delivered.status_code == 202
    file_id = delivered.json()["file_id"]

    def waiting() -> list[dict[str, Any]]:
        return [row for row in service.transfers("routing") if row["attempts"] >= 1]

    wait_until(lambda: bool(waiting()), timeout=60, interval=0.5, message="a failed call lookup recorded")
    (row,) = waiting()
    assert (row["id"], row["state"], row["storage"], row["filename"]) == (file_id, "routing", None,
                                                                           recording.filename)
    assert "503" in row["error"] and row["reason"] == "call_lookup_failed"
    assert [r["id"] for r in service.transfers()] == [file_id]  # the whole list shows it too
    metrics = service.get(paths.METRICS).text
    assert 'archiver_files_routing{reason="call_lookup_failed"} 1.0' in metrics

    fake.heal_api()
    (entry,) = service.wait_for_states(1, timeout=60)
    assert entry["storage"] == "alt" and service.transfers("routing") == []
    assert (tmp_path / "alt" / "default" / "waits" / recording.filename).read_bytes() == recording.read_bytes()


def test_one_recording_to_s3_gcs_azure_and_local_disk_at_once(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path, moto_server: str, bucket: str,
    gcs_emulator: str, azurite: str,
) -> None:
    gcs_bucket, container = gcs.create_bucket(gcs_emulator), az.create_container(azurite)
    service = archiver([
        local_storage(tmp_path / "disk"),
        s3_storage(moto_server, bucket),
        {"name": "gcs", "storage_type": "gcs", "bucket": gcs_bucket, "path": "calls/",
         "gcs_endpoint_url": gcs_emulator},
        {"name": "abs", "storage_type": "abs", "bucket": container,
         "azure_blob": {"abs_connection_string": az.connection_string(azurite)}},
    ])
    url = service.start_all()
    fake.add_call("board", "meeting", custom={"archive_storage": ["s3", "gcs", "abs", "disk"]})
    recording = fake.add_recording("board:meeting", os.urandom(6 * 1024 * 1024 + 1))
    assert fake.deliver(url, recording).status_code == 202

    archived = service.wait_for_states(4, timeout=90)
    assert {t["storage"] for t in archived} == {"s3", "gcs", "abs", "disk"}
    assert all(t["sha256"] == recording.sha256 for t in archived)
    key = f"board/meeting/{recording.filename}"
    original = recording.read_bytes()
    assert (tmp_path / "disk" / key).read_bytes() == original
    assert s3_client(moto_server).get_object(Bucket=bucket, Key=f"recordings/{key}")["Body"].read() == original
    gcs_object = gcs.object_resource(gcs_emulator, gcs_bucket, f"calls/{key}")
    assert gcs_object is not None and int(gcs_object["size"]) == len(original)
    assert az.container_client(azurite, container).download_blob(key).readall() == original
