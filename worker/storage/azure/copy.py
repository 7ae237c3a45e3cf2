"""Server-side copy into Azure Blob: Azure fetches a signed URL itself, the bytes skip the worker.

The source is cut into ``part_size`` ranges; each becomes a Put Block From URL
(``x-ms-source-range``), at most ``parts_in_flight`` at a time, and one Put Block List commits them
with content type and metadata (no ``sha256``, no Content-MD5: the worker never saw the bytes, so
the caller verifies the result), the encryption scope on every request and, as a writer's commit, the
immutability policy and legal hold. The source must be reachable from Azure's network, answer range
requests, and its signature must stay valid for the whole copy.

Create-only as a writer is (`worker.storage.create_only`): the name is checked before the first
range is staged, and Put Block List carries ``If-None-Match: *`` (or, in mode ``head``, a stat comes
right before it); a taken name raises KeyTaken.

A refusal raises CopyRefused, after deleting what was staged (as an aborted writer does), so that
the caller streams instead: HTTP 501 (Azurite answers ``APINotImplemented``), ``CannotVerifyCopySource``
(Azure could not fetch the source: unreachable from Azure, refused, expired), an invalid source URL,
or any "not supported" / "not implemented" answer. Other errors map as usual
(`worker.storage.azure.errors`).

The signed URL is a credential: messages and logs show its scheme, host and path only, the SDK's
text is scrubbed of it, and the SDK exception is not chained to what is raised.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, wait
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError, HttpResponseError
from azure.storage.blob import BlobBlock, ContentSettings

from worker.errors import CopyRefused
from worker.storage.azure.errors import describe, error_code, first_line, map_error
from worker.storage.azure.writer import block_ids, condition
from worker.storage.base import StoredObject
from worker.storage.errors import public_url
from worker.storage.keys import decode_header_metadata

if TYPE_CHECKING:
    from worker.storage.azure.container import AzureContainer
    from worker.storage.create_only import Guard

MAX_BLOCKS = 50_000
_REFUSAL_CODES = frozenset(
    {"CannotVerifyCopySource", "APINotImplemented", "NotImplemented", "FeatureNotSupported",
     "InvalidSourceBlobUrl", "InvalidSourceBlobType", "InvalidSourceUri"}
)  # fmt: skip


def is_refusal(exc: AzureError) -> bool:
    """True when Azure cannot or will not fetch the source itself (the caller should stream)."""
    if not isinstance(exc, HttpResponseError):
        return False
    text = first_line(exc.message).lower()
    return (
        exc.status_code == 501
        or error_code(exc) in _REFUSAL_CODES
        or "not supported" in text
        or "not implemented" in text
    )


def copy_from_url(
    container: AzureContainer,
    key: str,
    full_key: str,
    url: str,
    size: int,
    content_type: str,
    metadata: dict[str, str],
    guard: Guard,
) -> StoredObject:
    """Copy `size` bytes from `url` into `full_key` (metadata already encoded). Raises CopyRefused
    (nothing left behind), KeyTaken, StorageRefused / StorageUnavailable."""
    source = public_url(url)
    if size <= 0 or -(-size // container.tuning.part_size) > MAX_BLOCKS:
        where = container.where("copy into", key)
        raise CopyRefused(f"{where}: {size} bytes cannot be copied in blocks from {source}")
    copy = _BlockCopy(container, full_key, url, size, guard)
    try:
        response = copy.run(ContentSettings(content_type=content_type), metadata)
    except AzureError as exc:
        copy.discard(key)
        scrub = container.scrub.with_secrets(url, urlsplit(url).query)
        where = f"{container.where('copy into', key)} from {source}"
        if is_refusal(exc):
            raise CopyRefused(describe(exc, where, scrub)) from None
        raise map_error(exc, where, scrub) from None
    except BaseException:
        copy.discard(key)
        raise
    etag = str(response.get("etag") or "").strip('"') or None
    return StoredObject(key, size, decode_header_metadata(metadata), content_type, etag,
                        version=response.get("version_id") or None)


class _BlockCopy:
    """The Put Block From URL calls of one copy, at most ``parts_in_flight`` at a time."""

    def __init__(self, container: AzureContainer, full_key: str, url: str, size: int, guard: Guard) -> None:
        self._container, self._full_key, self._url, self._size = container, full_key, url, size
        self._guard = guard
        self._blob = container.blob(full_key)
        self._ids = block_ids()
        self._blocks: list[str] = []
        self._staging: list[Future[None]] = []
        self._failed = threading.Event()
        self._slots = threading.BoundedSemaphore(container.tuning.parts_in_flight)

    def run(self, settings: ContentSettings, metadata: dict[str, str]) -> dict[str, Any]:
        """Stage every range, then commit. Raises KeyTaken for a taken name, the first AzureError met."""
        self._guard.check()
        part_size = self._container.tuning.part_size
        for offset in range(0, self._size, part_size):
            self._slots.acquire()  # blocks while parts_in_flight ranges are being fetched
            if self._failed.is_set():
                self._slots.release()
                break
            block_id = next(self._ids)
            self._blocks.append(block_id)
            length = min(part_size, self._size - offset)
            future = self._container.parts.submit(self._stage, block_id, offset, length)
            future.add_done_callback(self._done)
            self._staging.append(future)
        for future in self._staging:
            future.result()
        blocks = [BlobBlock(block_id=block_id) for block_id in self._blocks]
        self._guard.head_first()
        return dict(self._blob.commit_block_list(blocks, content_settings=settings, metadata=metadata,
                                                 **condition(self._guard), **self._container.scope(),
                                                 **self._container.protected()))

    def discard(self, key: str) -> None:
        """Cancel queued ranges, wait for running ones, delete what was staged. Never raises."""
        for future in self._staging:
            future.cancel()
        wait(self._staging)
        if self._blocks:
            self._container.discard_staged(key, self._full_key)

    def _done(self, future: Future[None]) -> None:
        self._slots.release()
        if not future.cancelled() and future.exception() is not None:
            self._failed.set()

    def _stage(self, block_id: str, offset: int, length: int) -> None:
        self._blob.stage_block_from_url(block_id, self._url, source_offset=offset, source_length=length,
                                        **self._container.scope())
