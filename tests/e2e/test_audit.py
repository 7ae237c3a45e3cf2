"""`archiver audit` end to end: real processes, the fake Stream, a local disk and moto_server. After
archiving, a deep audit finds every file ok; an object deleted behind the archiver's back in S3 and
another altered on disk are named exactly, queued again and archived anew by a real worker; a file
the ledger never saw is reported, recorded and archived; the scheduler audits on its own."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.conftest import Archiver, local_storage, s3_storage
from tests.fakestream.server import FakeStream, StoredFile
from tests.support.processes import wait_until

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.e2e


def seed(fake: FakeStream) -> list[StoredFile]:
    """Three calls ended in the last hours, two recordings each."""
    return [fake.add_recording(f"default:audit-{n}", b"%d-%d|" % (n, i) * 400) for n in range(3) for i in range(2)]


def json_report(stdout: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return lines[:-1], lines[-1]["summary"]


def problems(rows: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    return {(r["filename"], r["storage"]): r["verdict"] for r in rows if r["verdict"] != "ok"}


def test_an_audit_names_exactly_the_object_deleted_and_the_one_altered_and_both_are_archived_again(
        archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path, moto_server: str,
        moto_client: S3Client, bucket: str) -> None:
    disk = tmp_path / "disk"
    service = archiver([local_storage(disk), s3_storage(moto_server, bucket)], default_storage=["disk", "s3"],
                       metrics_cache="0s")
    files = seed(fake)
    service.start_worker()
    url = service.start_web()
    assert all(fake.deliver(url, f).status_code == 202 for f in files)
    archived = {(t["filename"], t["storage"]): t for t in service.wait_for_states(12)}

    clean = service.cli("audit", "--deep", "--format", "json")
    assert clean.returncode == 0, clean.stderr
    rows, summary = json_report(clean.stdout)
    assert {(r["filename"], r["storage"]): r["verdict"] for r in rows} == {k: "ok" for k in archived}
    assert summary["ok"] == 12 and sum(summary.values()) == 12

    gone, altered = files[1], files[4]
    moto_client.delete_object(Bucket=bucket, Key="recordings/" + archived[(gone.filename, "s3")]["key"])
    path = disk / archived[(altered.filename, "disk")]["key"]
    path.write_bytes(path.read_bytes()[::-1])  # the same size: only reading it back tells
    found = service.cli("audit", "--deep", "--format", "json")
    assert found.returncode == 1, found.stderr
    rows, summary = json_report(found.stdout)
    assert problems(rows) == {(gone.filename, "s3"): "missing", (altered.filename, "disk"): "mismatch"}
    assert all(r["detail"].endswith("queued again (Stream still holds the file)") for r in rows if r["verdict"] != "ok")
    assert (summary["missing"], summary["mismatch"], summary["ok"]) == (1, 1, 10)
    metrics = service.get("/metrics").text
    assert 'archiver_audit_problems{verdict="missing"} 1.0' in metrics
    assert 'archiver_audit_problems{verdict="mismatch"} 1.0' in metrics

    def restored() -> bool:  # read from the storages themselves (a CLI call each poll would cost a second)
        return path.read_bytes() == altered.read_bytes() and s3_holds(gone.filename)

    def s3_holds(filename: str) -> bool:
        listed = moto_client.list_objects_v2(Bucket=bucket, Prefix="recordings/").get("Contents", [])
        return any(o["Key"].endswith("/" + filename) for o in listed)

    wait_until(restored, timeout=30, message="both objects archived again")
    body = moto_client.get_object(Bucket=bucket, Key="recordings/" + archived[(gone.filename, "s3")]["key"])["Body"]
    assert body.read() == gone.read_bytes()

    unseen = fake.add_recording("default:audit-0", b"never announced" * 100)  # no webhook, no reconciliation
    report = tmp_path / "audit.csv"
    told = service.cli("audit", "--format", "csv", "--output", str(report))
    assert told.returncode == 1 and "1 recorded now" in told.stderr, told.stderr
    table = list(csv.DictReader(io.StringIO(report.read_text())))
    assert {(r["filename"], r["storage"], r["verdict"]) for r in table if r["verdict"] != "ok"} == {
        (unseen.filename, "disk", "unknown_to_ledger"), (unseen.filename, "s3", "unknown_to_ledger")}
    assert len(table) == 14
    wait_until(lambda: (disk / "default" / "audit-0" / unseen.filename).exists() and s3_holds(unseen.filename),
               timeout=30, message="the file unknown to the ledger archived")

    page = tmp_path / "audit.html"
    finale = service.cli("audit", "--deep", "--format", "html", "--output", str(page))
    assert finale.returncode == 0, finale.stderr
    html = page.read_text()
    assert "<h2>Problems (0)</h2>" in html and html.count('<td class="ok">ok</td>') == 14 and "<script" not in html
    assert service.cli("audit", "--format", "xml").returncode == 2


def test_the_scheduler_audits_on_its_own_and_metrics_show_it(archiver: Callable[..., Archiver], fake: FakeStream,
                                                             tmp_path: Path) -> None:
    service = archiver([local_storage(tmp_path / "disk")], audit_every="1s", metrics_cache="0s")
    fake.add_recording("default:scheduled", b"x" * 1000)
    service.start_web()
    service.start_scheduler()  # its first reconciliation records the file; no worker: it stays queued
    wait_until(lambda: '"audit_finished"' in service.logs(), timeout=30, message="the scheduler's audit")
    metrics = service.get("/metrics").text
    assert "archiver_audit_last_run_timestamp_seconds " in metrics
    assert 'archiver_audit_problems{verdict="missing"} 0.0' in metrics
