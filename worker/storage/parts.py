"""PartedWriter: the streaming writer of a store that takes an object in one request or in parts.

Incoming chunks are kept as they are (no copy) until a part of ``part_size`` is full. While the
object may still go up in one request (no larger than ``multipart_threshold``), full parts are held;
past it, they go to the storage's thread pool with at most ``parts_in_flight`` in flight (``write``
blocks beyond that), each joined into one bytes object only once a slot is free (S3 sends the chunks as
they are, `_part_of`). Memory: about
``part_size × (parts_in_flight + 1)`` plus one incoming chunk. The first part that fails is raised at
the next write (or at commit), and any error aborts the writer: queued parts are cancelled, running
ones waited for, and what was sent is discarded.

Resume (`ObjectWriter.durable`, `detach`): every part the store acknowledged is noted, on its part thread
right after the answer, with its size and CRC32C (`_piece_crc32c`: the one the part carried where the
backend computes it anyway, else google-crc32c over the part, once); `durable` is the run of them
contiguous from part 1, with the backend's `_handle` for their answers. `detach` cancels queued parts and
waits for running ones, but leaves what was sent in the store. A backend's resumed writer starts with
`_resume_from(state, answers)`: the next part is number ``len(state.pieces) + 1``, the object already
``state.offset`` bytes long and in parts, and commit finishes the state's parts followed by the new ones.

A backend says how each step is sent: `_start_parts` (S3 CreateMultipartUpload; Azure nothing),
`_send_part` (UploadPart; Put Block), `_send_whole` (PutObject; Put Blob), `_finish_parts`
(CompleteMultipartUpload; Put Block List), `_discard` (what abort removes), `_raise_mapped` (its
SDK's errors), and what commit checks first and returns (`_begin_commit`, `_stored`).
"""

from __future__ import annotations

import contextvars
import threading
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from config import TransferTuning
from worker.storage.base import ObjectWriter, Piece, StoredObject, UploadState
from worker.storage.checksums import Digests, crc32c_b64

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
        # Resume: the parts a resumed writer found in the store (their answers), and every part the store
        # acknowledged (number → piece, answer), the first `_contiguous` of them without a gap.
        self._before: list[R] = []
        self._acked: dict[int, tuple[Piece, R]] = {}
        self._contiguous = 0
        self._noting = threading.Lock()
        self._durable: UploadState | None = None  # cached for `_contiguous` parts

    def _resume_from(self, state: UploadState, answers: Sequence[R]) -> None:
        """Go on from `state`, whose parts the store holds (`answers`: what `_send_part` returned for each,
        as `_finish_parts` needs them): the next write is byte ``state.offset``, the next part number
        ``len(state.pieces) + 1``."""
        if len(answers) != len(state.pieces):
            raise ValueError(f"{len(answers)} answers for {len(state.pieces)} pieces")
        self._before = list(answers)
        self._acked = {number: (piece, answer)
                       for number, (piece, answer) in enumerate(zip(state.pieces, answers, strict=True), 1)}
        self._contiguous = len(state.pieces)
        self._durable = state if state.pieces else None
        self._size = state.offset
        self._parted = True

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
                response = self._finish_parts([*self._before, *(future.result() for future in self._parts)], digests)
        self._state = "committed"
        return self._stored(response, digests)

    def abort(self) -> None:
        """Cancel queued parts, wait for running ones, then discard what was sent (`_discard`).
        Never raises: a failure is logged so that it cannot hide the error that led here."""
        if self._stop("aborted") and self._parted:
            self._discard()

    def durable(self) -> UploadState | None:
        """The parts the store acknowledged, contiguous from part 1 (see the module docstring); None while
        the object may still go in one request, or before the first part is acknowledged."""
        with self._noting:
            count, cached = self._contiguous, self._durable
            if count == 0:
                return None
            if cached is not None and len(cached.pieces) == count:
                return cached
            noted = [self._acked[number] for number in range(1, count + 1)]
        handle = self._handle([answer for _, answer in noted])
        if handle is None:
            return None
        pieces = tuple(piece for piece, _ in noted)
        state = UploadState(sum(piece.size for piece in pieces), pieces, handle)
        with self._noting:
            if self._durable is None or len(self._durable.pieces) < count:
                self._durable = state
        return state

    def detach(self) -> None:
        """Cancel queued parts and wait for running ones, leaving what the store holds for a later attempt
        (no `_discard`). Idempotent; never raises."""
        self._stop("detached")

    def _stop(self, state: str) -> bool:
        """Close the writer as `state`: drop what is buffered, cancel queued parts, wait for running ones.
        False, doing nothing, when it was closed already."""
        if self._state != "open":
            return False
        self._state = state
        self._pieces, self._held = [], []
        for future in self._parts:
            future.cancel()
        wait(self._parts)
        return True

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
        part = self._part_of(pieces)  # made only now, so that memory stays bounded
        pieces.clear()
        future = self._run(self._send_noted, len(self._before) + len(self._parts) + 1, part)
        future.add_done_callback(self._part_done)
        self._parts.append(future)

    def _part_of(self, pieces: list[bytes]) -> tuple[bytes, ...]:
        """What `_send_part` gets of a full part: its chunks joined into one bytes object (a store that
        can send the chunks as they are returns them, one copy of every byte fewer)."""
        return (b"".join(pieces),)

    def _send_noted(self, number: int, part: tuple[bytes, ...]) -> R:
        """`_send_part`, then note the part as acknowledged (with its size and CRC32C)."""
        answer = self._send_part(number, part)
        piece = Piece(sum(len(chunk) for chunk in part), self._piece_crc32c(part, answer))
        with self._noting:
            self._acked[number] = (piece, answer)
            while self._contiguous + 1 in self._acked:
                self._contiguous += 1
        return answer

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
    def _send_part(self, number: int, part: tuple[bytes, ...]) -> R:
        """Send part `number` (from 1), the chunks written in order, on a pool thread; return what
        `_finish_parts` needs of it."""

    def _piece_crc32c(self, part: tuple[bytes, ...], answer: R) -> str:
        """The CRC32C (wire form) of `part` (its chunks, one after the other), which the store acknowledged
        with `answer`: computed here unless the backend already has it (S3 sends one with each part in
        "crc32c" mode)."""
        return crc32c_b64(part)

    def _handle(self, answers: list[R]) -> Mapping[str, Any] | None:
        """`UploadState.handle` for the parts acknowledged so far (their answers, in order), or None for a
        backend that cannot resume (its `durable` is then None), as this default."""
        return None

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
