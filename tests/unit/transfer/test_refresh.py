"""Expiring and broken downloads (worker/transfer/refresh.py, stream_copy.py) run in-process: real Redis, local
disk, the fake Stream's REST API and CDN."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fakestream.models import StoredFile
from tests.fakestream.server import FakeStream
from worker.intake.record import record_routes
from worker.intake.webhook import ready_file
from worker.runtime import Runtime
from worker.transfer.download import Response
from worker.transfer.refresh import fresh_url
from worker.transfer.run import run_transfer
from worker.transfer.stream_copy import MAX_RECOVERIES

MiB = 1024 * 1024


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return tmp_path / "archive"


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime], archive: Path) -> Runtime:
    disk = {"name": "disk", "storage_type": "local", "bucket": str(archive)}
    return make_runtime(disk, "copy", retry_backoff="10s", retry_backoff_max="1m",
                        call_types={"fanout": ["disk", "copy"]})


def record(runtime: Runtime, fake: FakeStream, file: StoredFile, url: str | None = None) -> list[str]:
    """Record `file` as its webhook would, with `url` as the URL it carried."""
    stream_file = ready_file(fake.event_for(file, url=url))
    assert stream_file is not None
    return record_routes(runtime.archive, runtime.ledger, stream_file).transfer_ids


def expired(fake: FakeStream, file: StoredFile) -> str:
    return fake.signed_url(file, timedelta(seconds=-1))


def lists(fake: FakeStream, section: str = "recordings") -> int:
    """How many ListRecordings (or ListTranscriptions) requests the fake API saw."""
    return sum(1 for r in fake.api_requests if r.method == "GET" and r.path.endswith(f"/{section}"))


def gets(fake: FakeStream, file: StoredFile) -> list[dict[str, str]]:
    """The headers of every CDN GET of `file`."""
    return [headers for method, path, headers in fake.cdn_requests if method == "GET" and file.filename in path]


def stored(runtime: Runtime, archive: Path, tid: str) -> bytes:
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and transfer.state == "archived", transfer
    return (archive / transfer.key).read_bytes()


def test_an_expired_url_is_refreshed_once_and_remembered(runtime: Runtime, fake: FakeStream, archive: Path) -> None:
    file = fake.add_recording("default:late", os.urandom(MiB + 5))
    (tid,) = record(runtime, fake, file, url=expired(fake, file))
    assert run_transfer(runtime, tid) == "archived"
    assert stored(runtime, archive, tid) == file.read_bytes()
    assert lists(fake) == 1 and fake.downloads_of(file) == 1
    transfer = runtime.ledger.get(tid)
    assert transfer is not None
    url = runtime.ledger.file(transfer.file_id)["url"]
    assert url != expired(fake, file) and int(url.split("Expires=")[1].split("&")[0]) > datetime.now(UTC).timestamp()


def test_a_refreshed_url_serves_the_files_other_destinations(runtime: Runtime, fake: FakeStream,
                                                              archive: Path) -> None:
    file = fake.add_recording("fanout:two", os.urandom(2000))
    first, second = record(runtime, fake, file, url=expired(fake, file))
    assert run_transfer(runtime, first) == "archived"
    assert run_transfer(runtime, second) == "archived"
    assert lists(fake) == 1, "the second destination starts with the remembered URL"
    assert [h.get("range") for h in gets(fake, file)] == [None, None, None]  # 403, then two whole downloads


def after_first_response(runtime: Runtime, action: Callable[[], None]) -> None:
    """Run `action` once the first download answer's headers have arrived (its body not yet read)."""
    done: list[bool] = []
    request = runtime.http.request

    def answered(*args: Any, **kwargs: Any) -> tuple[str, Response]:
        answer = request(*args, **kwargs)
        if not done:
            done.append(True)
            action()
        return answer

    runtime.http.request = answered  # type: ignore[method-assign]


def test_a_403_in_the_middle_refreshes_and_resumes_with_a_range(runtime: Runtime, fake: FakeStream,
                                                                archive: Path) -> None:
    file = fake.add_recording("default:midway", os.urandom(3 * MiB + 11))
    (tid,) = record(runtime, fake, file)
    fake.truncate_next(file.filename, MiB + 123)
    after_first_response(runtime, lambda: fake.fail_next(file.filename, 403))
    assert run_transfer(runtime, tid) == "archived"
    assert stored(runtime, archive, tid) == file.read_bytes()
    assert lists(fake) == 1
    first, refused, resumed = gets(fake, file)
    assert "range" not in first and refused["range"] == resumed["range"] == f"bytes={MiB + 123}-"
    assert resumed.get("if-range") == file.etag
    assert fake.downloads_of(file) == 2, "the resume sent only the rest: no second full download"


def test_a_truncated_body_resumes_into_the_same_writer(runtime: Runtime, fake: FakeStream, archive: Path) -> None:
    file = fake.add_recording("default:short", os.urandom(2 * MiB + 1))
    (tid,) = record(runtime, fake, file)
    fake.truncate_next(file.filename, 1000)
    fake.truncate_next(file.filename, MiB)
    assert run_transfer(runtime, tid) == "archived"
    assert stored(runtime, archive, tid) == file.read_bytes()
    assert [h.get("range") for h in gets(fake, file)] == [None, "bytes=1000-", f"bytes={1000 + MiB}-"]
    assert lists(fake) == 0
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and (transfer.bytes, transfer.sha256) == (file.size, file.sha256)
    assert not [p for p in archive.rglob("*") if p.name.startswith(".")], "one writer, nothing left behind"


@pytest.fixture
def range_ignored(runtime: Runtime) -> Runtime:
    """A hop that drops Range and If-Range, as some proxies do: the CDN then answers 200, whole file."""
    request = runtime.http.request

    def without_range(method: str, url: str, headers: Mapping[str, str]) -> tuple[str, Response]:
        return request(method, url, {k: v for k, v in headers.items() if k.lower() not in ("range", "if-range")})

    runtime.http.request = without_range  # type: ignore[method-assign]
    return runtime


def test_a_resume_answered_with_the_whole_file_restarts_once(range_ignored: Runtime, fake: FakeStream,
                                                             archive: Path) -> None:
    file = fake.add_recording("default:norange", os.urandom(2 * MiB + 3))
    (tid,) = record(range_ignored, fake, file)
    fake.truncate_next(file.filename, MiB)
    assert run_transfer(range_ignored, tid) == "archived"
    assert stored(range_ignored, archive, tid) == file.read_bytes()
    assert fake.downloads_of(file) == 2, "the 200 answer itself is the restart: no third request"
    assert not [p for p in archive.rglob("*") if p.name.startswith(".")], "the first writer was aborted"


def test_a_second_whole_file_answer_goes_to_the_backoff(range_ignored: Runtime, fake: FakeStream) -> None:
    file = fake.add_recording("default:norange2", os.urandom(MiB + 3))
    (tid,) = record(range_ignored, fake, file)
    fake.truncate_next(file.filename, 1000, count=2)
    assert run_transfer(range_ignored, tid) == "retry"
    transfer = range_ignored.ledger.get(tid)
    assert transfer is not None and "ignored a range request twice" in (transfer.error or "")
    assert fake.downloads_of(file) == 3


def test_an_expired_transcription_url_is_refreshed_from_list_transcriptions(
    runtime: Runtime, fake: FakeStream, archive: Path
) -> None:
    file = fake.add_transcription("default:words", b'{"type":"speech","text":"hi"}\n' * 300)
    (tid,) = record(runtime, fake, file, url=expired(fake, file))
    assert run_transfer(runtime, tid) == "archived"
    assert stored(runtime, archive, tid) == file.read_bytes()
    assert (lists(fake, "transcriptions"), lists(fake, "recordings")) == (1, 0)


def test_fresh_url_is_none_for_a_file_or_call_stream_no_longer_lists(runtime: Runtime, fake: FakeStream) -> None:
    file = fake.add_recording("default:listed", b"x")
    record_ = {"call_cid": file.call_cid, "kind": "recording", "filename": file.filename}
    assert (fresh_url(runtime, record_) or "").startswith(f"http://{fake.cdn_host}/")
    assert fresh_url(runtime, {**record_, "filename": "other.mp4"}) is None
    assert fresh_url(runtime, {**record_, "call_cid": "default:never-was"}) is None


def test_a_frame_recording_s_url_is_never_refreshed_stream_lists_no_frames(runtime: Runtime,
                                                                          fake: FakeStream) -> None:
    frame = fake.add_frame_recording("default:frames", b"jpeg")
    before = len(fake.api_requests)
    assert fresh_url(runtime, {"call_cid": frame.call_cid, "kind": "frame_recording",
                               "filename": frame.filename}) is None
    assert len(fake.api_requests) == before


@pytest.mark.parametrize("missing_status", [403, 404])
def test_a_file_deleted_from_stream_past_its_deadline_is_lost(runtime: Runtime, fake: FakeStream,
                                                             missing_status: int) -> None:
    fake.missing_file_status = missing_status
    file = fake.add_recording("default:gone-old", b"x" * 10, end_time=datetime.now(UTC) - timedelta(days=15))
    (tid,) = record(runtime, fake, file)
    fake.delete_file(file)
    assert run_transfer(runtime, tid) == "lost"
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and transfer.state == "lost" and "deadline" in (transfer.error or "")
    assert lists(fake) == (1 if missing_status == 403 else 0), "a 404 is gone whatever the URL"


def test_a_file_deleted_from_stream_before_its_deadline_is_retried(runtime: Runtime, fake: FakeStream) -> None:
    fake.missing_file_status = 403
    file = fake.add_recording("default:gone-new", b"x" * 10)
    (tid,) = record(runtime, fake, file)
    fake.delete_file(file)
    assert run_transfer(runtime, tid) == "retry"
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and transfer.state == "queued"
    assert "Stream no longer lists" in (transfer.error or "") and "Signature" not in (transfer.error or "")


def test_a_cdn_that_keeps_refusing_is_retried_later_not_forever(runtime: Runtime, fake: FakeStream) -> None:
    file = fake.add_recording("default:refusing", b"x" * 100)
    (tid,) = record(runtime, fake, file)
    fake.fail_next(file.filename, 403, count=100)
    assert run_transfer(runtime, tid) == "retry"
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and "answered 403" in (transfer.error or "")
    assert "?" not in (transfer.error or ""), "no query string (signature) in the error"
    assert (lists(fake), len(gets(fake, file))) == (MAX_RECOVERIES, MAX_RECOVERIES + 1)


def test_a_cdn_that_keeps_breaking_is_retried_later_not_forever(runtime: Runtime, fake: FakeStream) -> None:
    file = fake.add_recording("default:breaking", os.urandom(MiB))
    (tid,) = record(runtime, fake, file)
    fake.truncate_next(file.filename, 100, count=100)
    assert run_transfer(runtime, tid) == "retry"
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and f"after {100 * (MAX_RECOVERIES + 1)} " in (transfer.error or "")
    assert len(gets(fake, file)) == MAX_RECOVERIES + 1


def test_a_cdn_refusing_a_file_stream_still_lists_is_not_lost_past_its_deadline(runtime: Runtime,
                                                                                fake: FakeStream) -> None:
    file = fake.add_recording("default:listed-old", b"x" * 10, end_time=datetime.now(UTC) - timedelta(days=15))
    (tid,) = record(runtime, fake, file)
    fake.fail_next(file.filename, 403, count=100)
    assert run_transfer(runtime, tid) == "retry"
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and transfer.state == "queued" and "answered 403" in (transfer.error or "")
