"""The Azure streaming writer: one Put Blob, or blocks staged with a bounded number in flight and one
Put Block List at commit.

See `worker.storage.azure` for the memory bound, what abort leaves and the error mapping it relies on.
"""

from __future__ import annotations

import base64
import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, wait
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from azure.core.exceptions import AzureError
from azure.storage.blob import BlobBlock, ContentSettings

from worker.checksums import Digests
from worker.storage.base import ObjectWriter, StoredObject

if TYPE_CHECKING:
    from worker.storage.azure import AzureStorage

_META_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_META_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def encode_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """Percent-encode values for HTTP headers. Raises ValueError for a name Azure refuses."""
    for name in metadata:
        if not _META_KEY.fullmatch(name):
            raise ValueError(f"Azure metadata names must be C# identifiers (ASCII letters, digits, '_'): {name!r}")
    return {name: quote(value, safe=_META_SAFE) for name, value in metadata.items()}


def decode_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    return {name: unquote(value) for name, value in metadata.items()}


def block_ids() -> Iterator[str]:
    """Block ids for one blob: all of one length (Azure requires it), unique to this writer so that
    another writer's uncommitted blocks under the same name are never mistaken for ours."""
    nonce = uuid.uuid4().hex
    number = 0
    while True:
        number += 1
        yield f"{nonce}{number:08d}"


def content_settings(content_type: str, digests: Digests | None) -> ContentSettings:
    """Content type, and the whole-content MD5 from `digests` as the blob's Content-MD5 property."""
    md5 = bytearray(base64.b64decode(digests.md5)) if digests is not None and digests.md5 else None
    return ContentSettings(content_type=content_type, content_md5=md5)


def checksums(digests: Digests | None) -> dict[str, str]:
    """What the committed blob keeps of `digests`: ``sha256`` (metadata) and ``md5`` (Content-MD5)."""
    if digests is None:
        return {}
    return {"sha256": digests.sha256, **({"md5": digests.md5} if digests.md5 else {})}


class AzureWriter(ObjectWriter):
    """One Put Blob, or staged blocks committed at once.

    Incoming chunks are kept as they are (no copy) until a block is full; a block is joined into one
    bytes object only once a slot is free."""

    def __init__(
        self, storage: AzureStorage, key: str, full_key: str, content_type: str, metadata: dict[str, str]
    ) -> None:
        self._s, self._key, self._full_key = storage, key, full_key
        self._blob = storage.blob(full_key)
        self._content_type, self._metadata = content_type, metadata
        self._pieces: list[bytes] = []  # the block being filled
        self._filled = 0
        self._held: list[list[bytes]] = []  # full blocks kept while the blob may still be one Put Blob
        self._size = 0
        self._ids = block_ids()
        self._blocks: list[str] = []  # staged (or being staged), in order
        self._staging: list[Future[None]] = []
        self._failure: BaseException | None = None
        self._slots = threading.BoundedSemaphore(storage.tuning.parts_in_flight)
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
        except AzureError as exc:
            self.abort()
            self._s.raise_mapped(exc, action, self._key)
        except BaseException:
            self.abort()
            raise

    def write(self, data: bytes) -> None:
        """Buffer `data`; stage full blocks once past the threshold, blocking while `parts_in_flight`
        blocks are in flight. Raises StorageRefused / StorageUnavailable / VerificationFailed (the
        writer is then aborted); ValueError once committed or aborted."""
        part_size = self._s.tuning.part_size
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
                    self._block_full()

    def commit(self, digests: Digests | None = None) -> StoredObject:
        """Put Blob, or stage the last block and Put Block List, with content type, metadata (plus
        ``sha256``) and Content-MD5 from `digests`. Raises StorageRefused / StorageUnavailable,
        VerificationFailed when Azure rejects an MD5 (the writer is then aborted); ValueError when
        closed."""
        with self._aborting_on_error("commit"):
            if digests is not None:
                self._metadata = {**self._metadata, "sha256": digests.sha256}
            settings = content_settings(self._content_type, digests)
            if not self._blocks and self._size <= self._s.tuning.multipart_threshold:
                response = self._put(settings, digests)
            else:
                response = self._commit_blocks(settings)
        self._state = "committed"
        etag = str(response.get("etag") or "").strip('"') or None
        metadata = decode_metadata(self._metadata)
        return StoredObject(self._key, self._size, metadata, self._content_type, etag, checksums(digests))

    def abort(self) -> None:
        """Cancel queued blocks, wait for running ones, delete what was staged when no committed blob
        holds the name. Never raises: a failure is logged so that it cannot hide the error that led here."""
        if self._state != "open":
            return
        self._state = "aborted"
        self._pieces, self._held = [], []
        for future in self._staging:
            future.cancel()
        wait(self._staging)
        if self._blocks:
            self._s.discard_staged(self._key, self._full_key)

    def _block_full(self) -> None:
        pieces, self._pieces, self._filled = self._pieces, [], 0
        self._held.append(pieces)
        if not self._blocks and self._size <= self._s.tuning.multipart_threshold:
            return  # may still be a single Put Blob
        held, self._held = self._held, []
        for block in held:
            self._submit(block)

    def _submit(self, pieces: list[bytes]) -> None:
        if self._failure is not None:
            raise self._failure  # a block failed: stop now rather than at commit
        self._slots.acquire()  # blocks while parts_in_flight blocks are in flight
        block = b"".join(pieces)  # joined only now, so that memory stays bounded
        pieces.clear()
        block_id = next(self._ids)
        self._blocks.append(block_id)
        future = self._s.submit(self._stage, block_id, block)
        future.add_done_callback(self._staged)
        self._staging.append(future)

    def _staged(self, future: Future[None]) -> None:
        self._slots.release()
        if not future.cancelled() and future.exception() is not None and self._failure is None:
            self._failure = future.exception()

    def _stage(self, block_id: str, block: bytes) -> None:
        self._blob.stage_block(block_id, block, length=len(block), validate_content="md5")

    def _put(self, settings: ContentSettings, digests: Digests | None) -> dict[str, Any]:
        body = b"".join(piece for block in [*self._held, self._pieces] for piece in block)
        self._pieces, self._held = [], []
        check: dict[str, Any] = {"validate_content": "md5"}  # Azure checks the body against this MD5
        if digests is not None and digests.md5:  # ... computed while streaming, rather than again here
            check = {"transactional_content_md5": base64.b64decode(digests.md5)}
        return self._blob.upload_blob(
            body, length=len(body), overwrite=True, metadata=self._metadata, content_settings=settings, **check
        )

    def _commit_blocks(self, settings: ContentSettings) -> dict[str, Any]:
        for block in [*self._held, self._pieces]:
            if block:
                self._submit(block)
        self._pieces, self._held = [], []
        for future in self._staging:
            future.result()
        response = self._blob.commit_block_list(
            [BlobBlock(block_id=block_id) for block_id in self._blocks],
            content_settings=settings,
            metadata=self._metadata,
        )
        return dict(response)
