"""PartedWriter: the streaming writer of a store that takes an object in one request or in parts.

Incoming chunks are kept as they are (no copy) until a part of ``part_size`` is full. While the
object may still go up in one request (no larger than ``multipart_threshold``), full parts are held;
past it, they go to the storage's thread pool with at most ``parts_in_flight`` in flight (``write``
blocks beyond that), each joined into one bytes object only once a slot is free. Memory: about
``part_size × (parts_in_flight + 1)`` plus one incoming chunk. The first part that fails is raised at
the next write (or at commit), and any error aborts the writer: queued parts are cancelled, running
ones waited for, and what was sent is discarded.

A backend says how each step is sent: `_start_parts` (S3 CreateMultipartUpload; Azure nothing),
`_send_part` (UploadPart; Put Block), `_send_whole` (PutObject; Put Blob), `_finish_parts`
(CompleteMultipartUpload; Put Block List), `_discard` (what abort removes), `_raise_mapped` (its
SDK's errors), and what commit checks first and returns (`_begin_commit`, `_stored`).
"""

from __future__ import annotations

import contextvars
import threading
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from config import TransferTuning
from worker.storage.base import ObjectWriter, StoredObject
from worker.storage.checksums import Digests

R = TypeVar("R")  # what sending one part returns: `_finish_parts` gets them all, in order


class PartedWriter(ObjectWriter, Generic[R]):
    """One object, sent in one request at commit or in parts as it comes (see the module docstring)."""

    def __init__(self, key: str, tuning: TransferTuning, submit: Callable[..., Future[Any]]) -> None:
        """`submit` runs a function on the storage's part pool."""
        self._key, self._tuning, self._run = key, tuning, submit
        self._pieces: list[bytes] = []  # the part being filled
        self._filled = 0
        self._held: list[list[bytes]] = []  # full parts kept while the object may still be one request
        self._size = 0
        self._parted = False  # the object goes up in parts (`_start_parts` has succeeded)
        self._parts: list[Future[R]] = []
        self._failure: BaseException | None = None
        self._slots = threading.BoundedSemaphore(tuning.parts_in_flight)
        self._state = "open"

    @property
    def committed(self) -> bool:
        return self._state == "committed"

    @contextmanager
    def _aborting_on_error(self, action: str) -> Iterator[None]:
        if self._state != "open":
            raise ValueError(f"writer for {self._key!r} is already {self._state}")
        try:
            yield
        except BaseException as exc:
            self.abort()
            if isinstance(exc, Exception):
                self._raise_mapped(exc, action)
            raise

    def write(self, data: bytes) -> None:
        """Buffer `data`; past the threshold, send full parts, blocking while `parts_in_flight` parts
        are in flight. Raises StorageRefused / StorageUnavailable, VerificationFailed when the store
        rejects a part's checksum (Azure's MD5) (the writer is then aborted); ValueError once
        committed or aborted."""
        part_size = self._tuning.part_size
        with self._aborting_on_error("write"):
            data = data if type(data) is bytes else bytes(data)  # kept by reference: must not change
            self._size += len(data)
            position = 0
            while position < len(data):
                take = min(part_size - self._filled, len(data) - position)
                self._pieces.append(data if take == len(data) else data[position : position + take])
                self._filled += take
                position += take
                if self._filled == part_size:
                    self._part_full()

    def commit(self, digests: Digests | None = None) -> StoredObject:
        """Send the object in one request (`_send_whole`), or the last parts and finish them
        (`_finish_parts`), after `_begin_commit`. Raises StorageRefused / StorageUnavailable,
        VerificationFailed when `digests` do not describe the bytes written (S3: their size) or the
        store rejects a checksum (Azure: an MD5) (the writer is then aborted); ValueError when closed."""
        with self._aborting_on_error("commit"):
            self._begin_commit(digests)
            if self._fits_one_request():
                body = b"".join(piece for part in [*self._held, self._pieces] for piece in part)
                self._pieces, self._held = [], []
                response = self._send_whole(body, digests)
            else:
                self._send_buffered()
                response = self._finish_parts([future.result() for future in self._parts], digests)
        self._state = "committed"
        return self._stored(response, digests)

    def abort(self) -> None:
        """Cancel queued parts, wait for running ones, then discard what was sent (`_discard`).
        Never raises: a failure is logged so that it cannot hide the error that led here."""
        if self._state != "open":
            return
        self._state = "aborted"
        self._pieces, self._held = [], []
        for future in self._parts:
            future.cancel()
        wait(self._parts)
        if self._parted:
            self._discard()

    def _fits_one_request(self) -> bool:
        """Whether the object may still go up in one request: no part sent, within the threshold."""
        return not self._parted and self._size <= self._tuning.multipart_threshold

    def _part_full(self) -> None:
        self._held.append(self._pieces)
        self._pieces, self._filled = [], 0
        if not self._fits_one_request():
            self._send_buffered()

    def _send_buffered(self) -> None:
        """Start the parts (once), then send every part held and the one being filled."""
        if not self._parted:
            self._start_parts()
            self._parted = True
        buffered, self._held, self._pieces = [*self._held, self._pieces], [], []
        for pieces in buffered:
            if pieces:
                self._submit(pieces)

    def _submit(self, pieces: list[bytes]) -> None:
        if self._failure is not None:
            raise self._failure  # a part failed: stop now rather than at commit
        self._slots.acquire()  # blocks while parts_in_flight parts are in flight
        part = b"".join(pieces)  # joined only now, so that memory stays bounded
        pieces.clear()
        future = self._run(self._send_part, len(self._parts) + 1, part)
        future.add_done_callback(self._part_done)
        self._parts.append(future)

    def _part_done(self, future: Future[R]) -> None:
        self._slots.release()
        if not future.cancelled() and future.exception() is not None and self._failure is None:
            self._failure = future.exception()

    # What a backend implements.

    @abstractmethod
    def _raise_mapped(self, exc: Exception, action: str) -> None:
        """Raise the `worker.errors` exception for an error of the backend's SDK; return for any other."""

    @abstractmethod
    def _begin_commit(self, digests: Digests | None) -> None:
        """The first step of commit, before any request (an error aborts the writer)."""

    def _start_parts(self) -> None:  # noqa: B027 - optional hook: a store may need nothing before parts
        """Make the store ready for parts, before the first one is sent."""

    @abstractmethod
    def _send_part(self, number: int, part: bytes) -> R:
        """Send part `number` (from 1), on a pool thread; return what `_finish_parts` needs of it."""

    @abstractmethod
    def _send_whole(self, body: bytes, digests: Digests | None) -> Mapping[str, Any]:
        """Send the whole object in one request; return the store's answer."""

    @abstractmethod
    def _finish_parts(self, parts: list[R], digests: Digests | None) -> Mapping[str, Any]:
        """Make the parts sent (what `_send_part` returned, in order) the object; return the store's answer."""

    @abstractmethod
    def _discard(self) -> None:
        """Remove what the parts left in the store, once none is running. Never raises: logs a failure."""

    @abstractmethod
    def _stored(self, response: Mapping[str, Any], digests: Digests | None) -> StoredObject:
        """What commit returns, from the store's answer."""


class PartPool:
    """The threads a storage sends parts with: created on first use, at most `size` of them."""

    def __init__(self, size: int, name: str) -> None:
        self._size, self._name = size, name
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run `fn(*args)` on one of the threads."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._size, thread_name_prefix=self._name)
            return self._pool.submit(contextvars.copy_context().run, fn, *args)  # the transfer's log context

    def close(self) -> None:
        """Cancel what has not started, wait for what has. Idempotent."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
