"""The GCS streaming writer: one multipart request, or a resumable upload session sent in chunks.

See `worker.storage.gcs.storage` for the design, the memory bound and what commit verifies.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import threading
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import requests

from worker.errors import StorageUnavailable, VerificationFailed
from worker.storage.base import ObjectWriter, Piece, StoredObject, UploadState
from worker.storage.checksums import Digests, b64, crc32c_b64, new_crc32c
from worker.storage.gcs.bucket import protected_fields

if TYPE_CHECKING:
    from worker.storage.create_only import Guard
    from worker.storage.gcs.bucket import GCSBucket


def stored_object(key: str, resource: Mapping[str, Any]) -> StoredObject:
    """A `StoredObject` from a GCS object resource (JSON API field names)."""
    metadata = {str(k): str(v) for k, v in (resource.get("metadata") or {}).items()}
    checksums = {
        name: str(resource[field]) for name, field in (("crc32c", "crc32c"), ("md5", "md5Hash")) if resource.get(field)
    }
    if "sha256" in metadata:
        checksums["sha256"] = metadata["sha256"]
    generation = str(resource.get("generation") or "") or None
    return StoredObject(
        key,
        int(resource.get("size") or 0),
        metadata,
        resource.get("contentType"),
        generation,
        checksums,
        generation,
    )


def persisted(response: requests.Response) -> int:
    """How many bytes a resumable session holds, from a 308's ``Range: bytes=0-N`` (none: 0)."""
    value = response.headers.get("Range", "")
    _, _, last = value.rpartition("-")
    return int(last) + 1 if last.isdigit() else 0


class GCSWriter(ObjectWriter):
    """Bytes wait in memory (kept by reference) until commit, or until the object is past the
    threshold: then a resumable session opens and full chunks leave as soon as more bytes follow
    them, so that the final chunk, sent at commit, is never empty."""

    def __init__(self, bucket: GCSBucket, key: str, name: str, content_type: str, metadata: Mapping[str, str],
                 guard: Guard, *, protect: bool = True):
        self._bucket, self._key, self._name, self._guard = bucket, key, name, guard
        self._protect = protect  # the object resource carries the storage's retention and holds
        self._content_type, self._metadata = content_type, dict(metadata)
        self._pieces: deque[memoryview] = deque()
        self._buffered = 0
        self._size = 0
        self._session: str | None = None  # the resumable session URI (itself a credential: never logged)
        self._sent = 0  # bytes the session holds
        self._state = "open"
        self._sender: ThreadPoolExecutor | None = None  # one chunk on its way while the next one fills
        self._in_flight: Future[Any] | None = None
        # Resume: the pieces the session acknowledged (each a 308's advance), and after `take_over` the bytes
        # still to drop because the session holds them already (with the CRC32C of those dropped so far).
        self._acked: list[Piece] = []
        self._noting = threading.Lock()
        self._drop, self._dropped, self._drop_crc = 0, 0, new_crc32c()
        self._durable: UploadState | None = None  # cached for as many pieces as `_acked` holds

    def settings(self) -> str:
        """A digest of what opening the session fixed for the whole upload (the name, content type, metadata, the
        retention and holds asked for, the KMS key, the create-only condition): a session is resumed only
        when they are still the same (`take_over`)."""
        retention = self._bucket.retention if self._protect else None
        protected = [retention.days, retention.mode, list(retention.holds)] if retention is not None else None
        fixed = [self._bucket.name, self._name, self._content_type, self._metadata, protected,
                 self._bucket.kms_key_name, self._guard.condition]
        return hashlib.sha256(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:32]

    def take_over(self, state: UploadState, session: str, held: int) -> bool:
        """Go on with the session of `state`, which holds `held` bytes (its status query said): False when
        that is fewer than the state's offset, or other settings. The next `held - state.offset` bytes
        written are dropped (sent already); the final CRC32C check at commit covers them."""
        if held < state.offset or state.handle.get("settings") != self.settings():
            return False
        self._session, self._sent, self._size = session, held, state.offset
        self._acked = list(state.pieces)
        self._drop = held - state.offset
        return True

    def durable(self) -> UploadState | None:
        """The chunks the resumable session acknowledged, from byte 0 (none before a session opens); built
        again only when a chunk was acknowledged since."""
        with self._noting:
            session, cached = self._session, self._durable
            if not self._acked or session is None:
                return None
            if cached is not None and len(cached.pieces) == len(self._acked):
                return cached
            pieces = tuple(self._acked)
        state = UploadState(sum(piece.size for piece in pieces), pieces, {"session": session,
                                                                           "settings": self.settings()})
        with self._noting:
            if self._durable is None or len(self._durable.pieces) < len(pieces):
                self._durable = state
        return state

    def detach(self) -> None:
        """Wait for the chunk on its way (one at most: it goes on, so that the session holds it), and leave
        the session open for a later attempt. Never raises."""
        if self._state != "open":
            return
        self._state = "detached"
        self._pieces.clear()
        self._buffered = 0
        try:
            self._wait_in_flight()
        except Exception:  # noqa: BLE001, S110 - a chunk that failed is not in `durable`: the next attempt resends it
            pass
        self._stop_sender()

    @property
    def committed(self) -> bool:
        return self._state == "committed"

    @contextmanager
    def _aborting_on_error(self) -> Iterator[None]:
        if self._state != "open":
            raise ValueError(f"writer for {self._key!r} is already {self._state}")
        try:
            yield
        except BaseException:
            self.abort()
            raise

    def write(self, data: bytes) -> None:
        """Buffer `data`; past the threshold, send every full chunk that more bytes follow.
        Raises StorageRefused / StorageUnavailable (the writer is then aborted); ValueError when closed."""
        with self._aborting_on_error():
            if self._drop:
                data = self._dropping(data)
            if not data:
                return
            self._pieces.append(memoryview(data if type(data) is bytes else bytes(data)))
            self._buffered += len(data)
            self._size += len(data)
            if self._session is None and self._size <= self._bucket.tuning.multipart_threshold:
                return
            self._session = self._session or self._start()
            while self._buffered > self._bucket.chunk_size:
                self._send_behind(self._take(self._bucket.chunk_size))

    def _dropping(self, data: bytes) -> bytes:
        """What is left of `data` once the bytes the resumed session holds already are dropped (counted in
        the object's size, and noted as one piece once all are)."""
        take = min(self._drop, len(data))
        self._drop -= take
        self._size += take
        self._dropped += take
        self._drop_crc.update(data[:take])
        if not self._drop:
            with self._noting:
                self._acked.append(Piece(self._dropped, b64(self._drop_crc.digest())))
        return data[take:]

    def _send_behind(self, chunk: bytes) -> None:
        """Send `chunk` on the writer's thread once the one before it is in (its error is raised
        here): the download goes on meanwhile. Memory: one chunk sending, one filling."""
        self._wait_in_flight()
        if self._sender is None:
            self._sender = ThreadPoolExecutor(1, thread_name_prefix="gcs-chunk")
        self._in_flight = self._sender.submit(contextvars.copy_context().run, self._send, chunk, None)

    def _wait_in_flight(self) -> None:
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.result()

    def _stop_sender(self) -> None:
        if self._sender is not None:
            self._sender.shutdown(wait=True, cancel_futures=True)
            self._sender = None

    def commit(self, digests: Digests | None = None) -> StoredObject:
        """Upload in one request, or send the final chunk; then compare size and CRC32C (MD5 too
        when given) with what GCS reports. Raises VerificationFailed (the object is then deleted),
        StorageRefused / StorageUnavailable; the writer is aborted after any error. ValueError when closed."""
        with self._aborting_on_error():
            self._wait_in_flight()
            self._stop_sender()
            resource = self._upload_once(digests) if self._session is None else self._finish(digests)
            stored = stored_object(self._key, resource)
            self._verify(stored, digests)
        self._state = "committed"
        return stored

    def abort(self) -> None:
        """Drop the buffered bytes and cancel the resumable session. Never raises: a failure is
        logged, so that it cannot hide the error that led here."""
        if self._state != "open":
            return
        self._state = "aborted"
        self._pieces.clear()
        self._buffered = 0
        self._stop_sender()  # the chunk on its way finishes (or fails) before the session goes
        self._in_flight = None
        session, self._session = self._session, None
        if session is not None:
            self._bucket.cancel(session, self._key)

    def _take(self, size: int) -> bytes:
        """The next `size` buffered bytes, joined (the one copy a chunk costs)."""
        out: list[memoryview] = []
        need = size
        while need:
            piece = self._pieces[0]
            if len(piece) <= need:
                out.append(self._pieces.popleft())
                need -= len(piece)
            else:
                out.append(piece[:need])
                self._pieces[0] = piece[need:]
                need = 0
        self._buffered -= size
        return b"".join(out)

    def _upload_once(self, digests: Digests | None) -> dict[str, Any]:
        """One multipart/related request: the object resource (with sha256, crc32c, md5 from
        `digests`, which GCS checks) and the bytes."""
        metadata = {**self._metadata, "sha256": digests.sha256} if digests is not None else self._metadata
        resource: dict[str, Any] = {"name": self._name, "contentType": self._content_type, "metadata": metadata,
                                    **self._protected()}
        if digests is not None and digests.crc32c:
            resource["crc32c"] = digests.crc32c
        if digests is not None and digests.md5:
            resource["md5Hash"] = digests.md5
        boundary = f"archiver-{uuid.uuid4().hex}"
        head = (
            f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{json.dumps(resource)}\r\n"
            f"--{boundary}\r\nContent-Type: {self._content_type}\r\n\r\n"
        ).encode()
        body = b"".join([head, *self._pieces, f"\r\n--{boundary}--\r\n".encode()])
        self._pieces.clear()
        self._buffered = 0
        headers = {"Content-Type": f"multipart/related; boundary={boundary}"}
        self._guard.head_first()
        response = self._bucket.start_upload("multipart", "upload", self._key, create_only=self._guard.condition,
                                             data=body, headers=headers)
        return dict(response.json())

    def _start(self) -> str:
        """Open the resumable session (metadata is fixed now) and return its URI; a taken name first
        raises KeyTaken (no chunk goes up for it)."""
        self._guard.check()
        resource = {"name": self._name, "contentType": self._content_type, "metadata": self._metadata,
                    **self._protected()}
        headers = {"X-Upload-Content-Type": self._content_type}
        response = self._bucket.start_upload("resumable", "start uploading", self._key,
                                             create_only=self._guard.condition, json=resource, headers=headers)
        location = response.headers.get("Location")
        if not location:
            where = self._bucket.where("start uploading", self._key)
            raise StorageUnavailable(f"{where} failed: no session URI returned")
        return location

    def _protected(self) -> dict[str, Any]:
        """Retention and holds for the object resource, counted from now, unless this write is unprotected."""
        return protected_fields(self._bucket.retention) if self._protect else {}

    def _finish(self, digests: Digests | None) -> dict[str, Any]:
        self._guard.head_first()
        chunk = self._take(self._buffered)
        checksum = digests.crc32c if digests is not None else None
        resource = self._send(chunk, total=self._sent + len(chunk), checksum=checksum)
        self._session = None  # finished: nothing left to cancel
        return resource or {}

    def _send(self, chunk: bytes, total: int | None, checksum: str | None = None) -> dict[str, Any] | None:
        """PUT `chunk` at the session's offset (`total` only with the final one, which carries
        ``x-goog-hash``). GCS may keep only the start of a chunk (its 308 says how much): the rest is
        sent again. Returns the object resource after the final chunk."""
        start = self._sent
        while True:
            part = chunk[self._sent - start :] if self._sent > start else chunk
            span = f"{self._sent}-{self._sent + len(part) - 1}" if part else "*"  # "*": nothing more to send
            headers = {"Content-Range": f"bytes {span}/{'*' if total is None else total}"}
            if total is not None and checksum:
                headers["x-goog-hash"] = f"crc32c={checksum}"
            response = self._bucket.call(
                "PUT",
                self._session or "",
                "upload",
                self._key,
                ok=(200, 201, 308),
                missing="session",
                data=part,
                headers=headers,
            )
            if response.status_code != 308:
                self._sent = start + len(chunk)
                return dict(response.json())
            held = persisted(response)
            if held > self._sent:
                self._note(chunk, self._sent - start, held - start)
            if total is None and held == start + len(chunk):
                self._sent = held
                return None
            if held <= self._sent:
                raise StorageUnavailable(f"{self._bucket.where('upload', self._key)} failed: GCS kept none of a chunk")
            self._sent = held

    def _note(self, chunk: bytes, begin: int, end: int) -> None:
        """Note `chunk[begin:end]` as a piece the session acknowledged."""
        piece = chunk if begin == 0 and end == len(chunk) else chunk[begin:end]
        with self._noting:
            self._acked.append(Piece(len(piece), crc32c_b64(piece)))

    def _verify(self, stored: StoredObject, digests: Digests | None) -> None:
        problems = [] if stored.size == self._size else [f"size {stored.size}, sent {self._size}"]
        if digests is not None and digests.size != self._size:
            problems.append(f"digests describe {digests.size} bytes, sent {self._size}")
        for name in ("crc32c", "md5"):
            expected = digests.get(name) if digests is not None else None
            if expected and stored.checksums.get(name) != expected:
                problems.append(f"{name} {stored.checksums.get(name)}, expected {expected}")
        if problems:
            deleted = self._bucket.discard(self._key, self._name, stored.etag)
            raise VerificationFailed(
                f"{self._bucket.where('commit', self._key)}: the stored object does not match what was sent "
                f"({'; '.join(problems)}); {'it was deleted' if deleted else 'deleting it failed'}"
            )
