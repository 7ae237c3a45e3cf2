"""The streaming copy: a file's download fed into one storage writer, through refused URLs and broken
connections.

* The CDN refuses the URL (401/403/410, at the start or on a resume): ask Stream for a fresh one
  (`worker.transfer.refresh`) and go on.
* The body ends short or the connection drops: go on from the byte already written, with
  ``Range: bytes=N-`` (+ ``If-Range: <ETag>`` of the first answer), into the same writer and the same
  hasher, so nothing is uploaded twice.
* A resume answered with the whole file (200: the range was ignored or the file changed): abort the
  writer and start again from zero with that answer, over one connection, once per attempt.
* A large file is fetched as several byte ranges at once (`worker.transfer.ranged`), each range
  resumed on its own; the bytes still reach the writer and the hasher in order.
* Across attempts, the upload itself is resumed (`worker.transfer.resume`): what the store holds
  durably is recorded in the ledger as the copy goes, and the next attempt writes only the rest.

The write is create-only unless the job may replace its object (`CopyJob.overwrite`): when the key
turns out taken (KeyTaken, at commit or before the first part), the rest of the file is still fetched
and hashed, without writing, and `worker.transfer.taken` decides: the same bytes are archived already,
other bytes fail the transfer (``key_taken``).

Each refresh or resume spends one of `MAX_RECOVERIES`; past them the error goes to the ledger's
backoff like any other. Only a 404 or Stream no longer listing the file is a SourceMissing (`lost`
after the deadline); a CDN refusing even fresh URLs is SourceUnavailable. Memory stays bounded:
chunks pass straight through.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

from config.logging import redact_url
from worker.errors import IncompleteDownload, KeyTaken, SourceUnavailable, TransientError, UrlRefused
from worker.ledger.lease import Heartbeat
from worker.runtime import Runtime
from worker.storage import ObjectWriter, Storage
from worker.storage.checksums import BackgroundHasher, Digests
from worker.transfer import ranged
from worker.transfer.download import Download, open_download
from worker.transfer.ranged import RangeFeed, RangeIgnored
from worker.transfer.refresh import SignedUrl
from worker.transfer.resume import PrefixDiffers, Upload
from worker.transfer.taken import resolve_taken

log = structlog.get_logger(__name__)
MAX_RECOVERIES = 5
T = TypeVar("T")


class Recoveries:
    """How many more refreshes and resumes this attempt may make (shared by its download streams)."""

    def __init__(self, allowed: int = MAX_RECOVERIES) -> None:
        self.left = allowed
        self._lock = threading.Lock()

    def spend(self, failure: TransientError) -> None:
        """Take one; raise `failure` when none is left."""
        with self._lock:
            if self.left <= 0:
                raise failure
            self.left -= 1


@dataclass(frozen=True)
class CopyJob:
    """One object to write from one source, and what the copy needs on the way."""

    runtime: Runtime
    source: SignedUrl
    lease: Heartbeat
    storage: Storage
    key: str
    content_type: str
    metadata: Mapping[str, str]
    recoveries: Recoveries
    overwrite: bool = False  # its object was found damaged: this write may replace it
    noted: tuple[int, str] | None = None  # size and SHA-256 an earlier attempt was about to commit
    resume: str | None = None  # the upload an earlier attempt left to resume (`Transfer.upload`)
    refreshing: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)


def with_fresh_url(job: CopyJob, action: Callable[[str], T]) -> T:
    """`action(url)`, asking Stream for a fresh URL each time the CDN refuses the current one (once
    for all the streams the same URL was refused to)."""
    while True:
        url = job.source.url
        try:
            return action(url)
        except UrlRefused as exc:
            with job.refreshing:
                if job.source.url != url:
                    continue  # another stream refreshed it meanwhile
                # Out of recoveries, a refusal is no proof the file is gone (only a 404 or Stream's
                # list is): it must not make the file `lost`, so it goes to the backoff as unavailable.
                job.recoveries.spend(SourceUnavailable(f"{exc} (no refresh left in this attempt)"))
                job.lease.check()
                job.source.refresh(exc)


class _Sink:
    """The upload's `write`, until it finds the key taken: then the bytes go nowhere (still hashed)."""

    def __init__(self, writer: ObjectWriter | Upload) -> None:
        self.writer = writer
        self.taken: KeyTaken | None = None

    def write(self, chunk: bytes) -> None:
        if self.taken is None:
            try:
                self.writer.write(chunk)
            except KeyTaken as exc:  # the writer is aborted: nothing of it is left
                self.taken = exc


def stream_copy(job: CopyJob) -> Digests:
    """Write the whole file into a new object under `job.key` and commit it; the digests archived
    (those of an object already at the key, see the module docstring). Raises KeyTaken when other
    bytes are there."""
    download, record, restarted = _open(job, 0, None), job.resume, False
    while True:
        try:
            return _write(job, download, parallel=not restarted, record=record)
        except RangeIgnored as ignored:
            download, record = ignored.download, None
            if restarted:
                download.close()
                raise SourceUnavailable(f"{redact_url(download.url)} ignored a range request twice") from None
            restarted = True
            log.warning("download_restarted", reason=str(ignored))
        except PrefixDiffers as differs:  # the resumed upload is aborted: once more, afresh
            log.warning("upload_resume_refused", reason=str(differs))
            download, record = _open(job, 0, None), None


def _write(job: CopyJob, first: Download, *, parallel: bool, record: str | None) -> Digests:
    native = job.storage.native_checksum_for(first.total)
    with BackgroundHasher((native,) if native else ()) as hasher, first, Upload(job, first.total, record) as upload:
        sink = _Sink(upload)
        _feed(job, first, sink.write, hasher, parallel=parallel)
        job.lease.check()
        digests = hasher.digests()
        if sink.taken is None:
            try:
                job.lease.note_commit(digests.size, digests.sha256)
                upload.writer.commit(digests)
                return digests
            except KeyTaken as exc:
                sink.taken = exc
    return resolve_taken(job.storage, job.key, digests, job.noted, sink.taken)


def _feed(job: CopyJob, first: Download, write: Callable[[bytes], None], hasher: BackgroundHasher, *,
          parallel: bool) -> None:
    """Every byte of the file into `write`, resuming after broken bodies; in parallel ranges when
    the file is large and the source serves ranges."""
    if parallel and _feed_ranges(job, first, write, hasher):
        return
    download = first
    while True:
        try:
            _pump(job, download, write, hasher)
            return
        except IncompleteDownload as exc:
            job.recoveries.spend(exc)
            log.warning("download_resumed", offset=hasher.size, error=str(exc))
        finally:
            if download is not first:
                download.close()
        download = _resume(job, hasher.size, first)


def _feed_ranges(job: CopyJob, first: Download, write: Callable[[bytes], None], hasher: BackgroundHasher) -> bool:
    """The file in parallel ranges (`worker.transfer.ranged`), after a first range read from the first answer
    and timed; False when it is not for them: too small, a source that refuses ranges, or one fast enough
    over one connection (``parallel_download_max_rate``): the caller then goes on with the first answer where it is."""
    tuning = job.runtime.archive.transfer
    size, streams = int(tuning.part_size), tuning.download_streams
    if not ranged.wanted(first, int(tuning.parallel_download_threshold), size, streams):
        return False
    assert first.total is not None  # `wanted`
    if _first_range_fast(job, first, size, int(tuning.parallel_download_max_rate), write, hasher):
        return False
    start = hasher.size  # the first answer goes on from here, as the first range of the feed
    if start + size >= first.total:  # a range or less left: the first answer brings it
        return False
    open_range = _range_opener(job, first)
    second = ranged.second_range(open_range, first, start, size)
    if second is None:
        log.info("download_ranges_refused", bytes=first.total)
        return False
    log.info("download_in_ranges", bytes=first.total, streams=streams, range_size=size, start=start)
    feed = RangeFeed(open_range, lambda exc, at: _recover(job, exc, at), first.total, size, streams, start=start)
    feed.run(first, second, lambda chunk: _take(job, chunk, write, hasher))
    if hasher.size != first.total:  # each range was checked; this checks their sum
        raise IncompleteDownload(f"{redact_url(first.url)} gave {hasher.size} of {first.total} bytes in ranges")
    return True


def _first_range_fast(job: CopyJob, first: Download, size: int, fast: int, write: Callable[[bytes], None],
                      hasher: BackgroundHasher) -> bool:
    """At least `size` bytes of the first answer fed, timed: True when they came at `fast` bytes a second or
    faster (more connections would cost CPU and gain nothing). An answer that broke is no proof of speed: False,
    and the feed's first range resumes it on its own."""
    started = time.monotonic()
    try:
        for chunk in first.chunks():
            _take(job, chunk, write, hasher)
            if hasher.size >= size:
                break
    except IncompleteDownload:
        return False
    rate = hasher.size / max(time.monotonic() - started, 1e-6)
    if rate < fast:
        return False
    log.info("download_one_stream", bytes=first.total, mib_per_s=round(rate / 2**20))
    return True


def _range_opener(job: CopyJob, first: Download) -> ranged.OpenRange:
    """Opens bytes start..end of the file (`ranged.checked` against the first answer); thread-safe."""
    chunk_size = int(job.runtime.archive.transfer.read_chunk)

    def open_range(start: int, end: int) -> Download:
        job.lease.check()
        download = with_fresh_url(job, lambda url: open_download(job.runtime.http, url, chunk_size, offset=start,
                                                                 etag=first.etag, end=end))
        return ranged.checked(download, start, end, first.total)

    return open_range


def _recover(job: CopyJob, exc: IncompleteDownload, offset: int) -> None:
    job.recoveries.spend(exc)
    log.warning("download_resumed", offset=offset, error=str(exc))


def _pump(job: CopyJob, download: Download, write: Callable[[bytes], None], hasher: BackgroundHasher) -> None:
    for chunk in download.chunks():
        _take(job, chunk, write, hasher)


def _take(job: CopyJob, chunk: bytes, write: Callable[[bytes], None], hasher: BackgroundHasher) -> None:
    hasher.update(chunk)
    write(chunk)
    job.lease.progress()
    job.lease.check()


def _resume(job: CopyJob, offset: int, first: Download) -> Download:
    """The rest of the file from `offset`, checked against the first answer."""
    job.lease.check()
    download = _open(job, offset, first.etag)
    if download.start != offset:
        raise RangeIgnored(download)
    if first.total is not None and download.total not in (None, first.total):
        download.close()
        raise SourceUnavailable(
            f"{redact_url(download.url)} changed size while downloading: {first.total} then {download.total} bytes"
        )
    return download


def _open(job: CopyJob, offset: int, etag: str | None) -> Download:
    chunk_size = int(job.runtime.archive.transfer.read_chunk)
    http = job.runtime.http
    return with_fresh_url(job, lambda url: open_download(http, url, chunk_size, offset=offset, etag=etag))
