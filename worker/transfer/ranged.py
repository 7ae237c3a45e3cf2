"""Parallel ranged downloads: a large file fetched as `download_streams` byte ranges at once over as
many connections, fed to the storage writer in order (one CDN connection's throughput is capped by
the CDN and by latency; several ranges at once are not).

Which files: every download starts with a plain GET, as a small file's does
(`worker.transfer.stream_copy`). When that first answer is a 200 of at least
``parallel_download_threshold`` bytes, larger than one range, its first ``part_size`` bytes are read and
timed: a source that sent them at ``parallel_download_max_rate`` (128 MiB/s) or faster keeps the whole
file on that one connection (more would cost CPU and connections and gain nothing: one connection is not
what limits such a transfer). Otherwise the rest of the file is cut into ranges of ``part_size`` bytes
from there. The first of them is read from the first answer (its connection is closed after it: the rest
of its body is not wanted); the next is asked for at once with ``Range: bytes=N-M`` and ``If-Range``
(the first answer's ETag), and its answer decides (`second_range`): a 206 of exactly that range goes on
in parallel; a 200 (the source ignores ranges) leaves the whole file to the first answer, over one
connection.

How: each range is fetched by one of `download_streams` threads into a queue of its own; the feeding
thread empties the queues in order, so hashing, writing and the size and SHA-256 checks are those of
a single stream. A thread starts a range only when it is among the `download_streams` next ones to
write, so **at most download_streams × part_size bytes wait in memory** (the first answer's unread
rest waits in the kernel's socket buffer, never in Python).

Faults: a range cut short, or answered with another range or size, is asked for again from its first
missing byte, on its own (one of the attempt's recoveries each time); a refused URL is refreshed once
for every stream (`with_fresh_url`); every new connection goes through the address guard like any
download's. Any other failure of a stream, or of the feeding thread, cancels the others: their
blocked reads are interrupted, their connections closed and their threads joined before the error
goes on (and the writer is aborted, as for any failed copy). A range answered with the whole file
(the file changed since the first answer: If-Range) is `RangeIgnored`: the copy starts again from
that answer, over one connection.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from config.logging import redact_url
from worker.errors import IncompleteDownload
from worker.transfer.download import Download

OpenRange = Callable[[int, int], Download]  # (first byte, last byte) → an open answer `checked` to be that range
Recover = Callable[[IncompleteDownload, int], None]  # spend a recovery for a cut at this offset, or raise


class RangeIgnored(Exception):
    """A range request was answered with the whole file, from byte 0: `download` is that open answer."""

    def __init__(self, download: Download) -> None:
        super().__init__("the download host answered a range request with the whole file")
        self.download = download


class _Cancelled(Exception):
    """The feed stopped (done or failed): a stream thread leaves quietly."""


def ranges_of(total: int, size: int, start: int = 0) -> list[tuple[int, int]]:
    """The file's ranges from byte `start` as (first byte, end) pairs, end exclusive."""
    return [(at, min(at + size, total)) for at in range(start, total, size)]


def wanted(first: Download, threshold: int, range_size: int, streams: int) -> bool:
    """True when `first` (a download's first answer) is a file worth fetching in parallel ranges."""
    total = first.total
    return streams > 1 and first.start == 0 and total is not None and total >= threshold and total > range_size


def checked(download: Download, start: int, end: int, total: int | None) -> Download:
    """`download` when it is a 206 of exactly bytes `start`..`end` (included) of a file of `total`
    bytes. Raises RangeIgnored for a 200 (the whole file), IncompleteDownload for any other answer
    (retried like a cut)."""
    if download.status == 200:
        raise RangeIgnored(download)
    if download.start == start and download.length == end - start + 1 and download.total == total:
        return download
    download.close()
    raise IncompleteDownload(f"{redact_url(download.url)} answered bytes {start}-{end} of {total} with "
                             f"{download.length} bytes from {download.start} of {download.total}")


def second_range(open_range: OpenRange, first: Download, start: int, range_size: int) -> Download | None:
    """The open answer for the range after the one the first answer serves from `start`, when the source
    serves ranges; None when it does not (its answer is then closed and the first answer serves the
    whole file)."""
    assert first.total is not None  # `wanted`
    try:
        return open_range(start + range_size, min(start + 2 * range_size, first.total) - 1)
    except RangeIgnored as ignored:
        ignored.download.close()
    except IncompleteDownload:
        pass  # a range, but not the one asked for: one stream is safer with such a source
    return None


@dataclass(eq=False)
class _Range:
    start: int
    end: int  # exclusive
    got: int = 0  # bytes queued so far
    chunks: queue.SimpleQueue[bytes | BaseException | None] = field(default_factory=queue.SimpleQueue)

    @property
    def size(self) -> int:
        return self.end - self.start


class RangeFeed:
    """One parallel download: `run` it once (see the module docstring)."""

    def __init__(self, open_range: OpenRange, recover: Recover, total: int, range_size: int, streams: int, *,
                 start: int = 0) -> None:
        """The file from byte `start` (what comes before was read already)."""
        self._open_range, self._recover, self._streams = open_range, recover, streams
        self._ranges = [_Range(at, end) for at, end in ranges_of(total, range_size, start)]
        self._cancelled = False
        self._open: dict[int, Download] = {}  # by id(): the answers a cancel interrupts
        self._lock = threading.Lock()

    def run(self, first: Download, second: Download, consume: Callable[[bytes], None]) -> None:
        """Every byte of the file from `start` into `consume`, in order; the first range from `first` (which
        goes on from there), the second from `second` (both closed by then). Raises what a stream or
        `consume` raised."""
        initial = {0: first, 1: second}
        window = min(self._streams, len(self._ranges))
        pool = ThreadPoolExecutor(max_workers=window, thread_name_prefix="download-range")
        try:
            for index in range(window):
                self._start(pool, index, initial.pop(index, None))
            for index, part in enumerate(self._ranges):
                self._drain(part, consume)
                if index + window < len(self._ranges):
                    self._start(pool, index + window, None)
        finally:
            self._cancel()
            pool.shutdown(wait=True)
            for download in initial.values():  # never handed to a thread (a failure before)
                download.close()
            self._discard_unread()

    def _start(self, pool: ThreadPoolExecutor, index: int, download: Download | None) -> None:
        if download is not None:
            self._watch(download)
        context = contextvars.copy_context()  # the transfer's log context, in the stream's thread
        pool.submit(context.run, self._fetch, self._ranges[index], download)

    def _drain(self, part: _Range, consume: Callable[[bytes], None]) -> None:
        while (item := part.chunks.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            consume(item)

    def _fetch(self, part: _Range, download: Download | None) -> None:
        """A stream's thread: `part`'s bytes into its queue, then None (or the error that stopped it)."""
        try:
            while part.got < part.size:
                if download is None:
                    download = self._watch(self._open_range(part.start + part.got, part.end - 1))
                try:
                    self._pump(part, download)
                except IncompleteDownload as exc:
                    if self._cancelled:
                        raise _Cancelled from None
                    self._recover(exc, part.start + part.got)
                finally:
                    self._release(download)
                    download = None
            part.chunks.put(None)
        except BaseException as exc:  # noqa: BLE001 - every failure goes to the feeding thread, which raises it
            part.chunks.put(exc)

    def _pump(self, part: _Range, download: Download) -> None:
        for chunk in download.chunks():
            if self._cancelled:
                raise _Cancelled
            if len(chunk) > part.size - part.got:  # only the first answer runs past its range
                chunk = chunk[: part.size - part.got]
            part.chunks.put(chunk)
            part.got += len(chunk)
            if part.got == part.size:
                return

    def _watch(self, download: Download) -> Download:
        """Note an open answer, so a cancel can interrupt it; closes it when cancelled already."""
        with self._lock:
            if not self._cancelled:
                self._open[id(download)] = download
                return download
        download.close()
        raise _Cancelled

    def _release(self, download: Download) -> None:
        with self._lock:
            self._open.pop(id(download), None)
            download.close()

    def _cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            for download in self._open.values():
                download.interrupt()

    def _discard_unread(self) -> None:
        """Close the whole-file answers of RangeIgnored errors nobody raised (the feed failed first)."""
        for part in self._ranges:
            while not part.chunks.empty():
                item = part.chunks.get_nowait()
                if isinstance(item, RangeIgnored):
                    item.download.close()
