"""The Azure streaming writer: one Put Blob, or blocks staged with a bounded number in flight and one
Put Block List at commit.

See `worker.storage.azure.storage` for the memory bound, what abort leaves and the error mapping it relies on,
and `worker.storage.parts` for the buffering and the blocks in flight.
"""

from __future__ import annotations

import base64
import itertools
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError
from azure.storage.blob import BlobBlock, ContentSettings

from worker.storage.base import StoredObject, UploadState
from worker.storage.checksums import Digests, b64, crc32c_b64
from worker.storage.keys import decode_header_metadata, encode_header_metadata
from worker.storage.parts import PartedWriter

if TYPE_CHECKING:
    from worker.storage.azure.container import AzureContainer
    from worker.storage.create_only import Guard

_META_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def encode_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """Percent-encode values for HTTP headers. Raises ValueError for a name Azure refuses."""
    rule = "Azure metadata names must be C# identifiers (ASCII letters, digits, '_')"
    return encode_header_metadata(metadata, _META_KEY, rule)


def block_id(nonce: str, number: int) -> str:
    """Block `number` of one blob: all of one length (Azure requires it), unique to one writer by
    `nonce` so that another writer's uncommitted blocks under the same name are never mistaken for ours."""
    return f"{nonce}{number:08d}"


def piece_block_id(nonce: str, number: int, crc32c: str) -> str:
    """Block `number` of a writer's blob, naming its CRC32C (wire form): ``nonce`` (24 hex digits, unique to
    the writer) + the CRC32C in 8 hex digits + the number in 8, 40 characters as `block_id`'s. Azure's block
    list gives ids and sizes only: the id is how a resumed writer knows the block holds the bytes of that CRC32C."""
    return f"{nonce}{base64.b64decode(crc32c).hex()}{number:08d}"


def piece_crc32c(name: str) -> str:
    """The CRC32C (wire form) a `piece_block_id` names."""
    return b64(bytes.fromhex(name[24:32]))


def block_ids() -> Iterator[str]:
    """The ids of one blob's blocks, in order (see `block_id`)."""
    nonce = uuid.uuid4().hex
    return (block_id(nonce, number) for number in itertools.count(1))


def content_settings(content_type: str, digests: Digests | None) -> ContentSettings:
    """Content type, and the whole-content MD5 from `digests` as the blob's Content-MD5 property."""
    md5 = bytearray(base64.b64decode(digests.md5)) if digests is not None and digests.md5 else None
    return ContentSettings(content_type=content_type, content_md5=md5)


def condition(guard: Guard) -> dict[str, Any]:
    """``If-None-Match: *`` on the request that makes the blob visible (Put Blob, Put Block List), unless
    it may replace one (or the storage checks with a HEAD instead)."""
    return {"if_none_match": "*"} if guard.condition else {}


def checksums(digests: Digests | None) -> dict[str, str]:
    """What the committed blob keeps of `digests`: ``sha256`` (metadata) and ``md5`` (Content-MD5)."""
    if digests is None:
        return {}
    return {"sha256": digests.sha256, **({"md5": digests.md5} if digests.md5 else {})}


class AzureWriter(PartedWriter[str]):
    """One Put Blob, or staged blocks committed at once (see `worker.storage.parts` for the buffering
    and the blocks in flight)."""

    def __init__(
        self, container: AzureContainer, key: str, full_key: str, content_type: str, metadata: dict[str, str],
        guard: Guard, *, protect: bool = True,
    ) -> None:
        super().__init__(key, container.tuning, container.parts.submit)
        self._container, self._full_key, self._guard = container, full_key, guard
        self._protect = protect  # the commit carries the storage's immutability policy and legal hold
        self._blob = container.blob(full_key)
        self._content_type, self._metadata = content_type, metadata
        self._nonce = uuid.uuid4().hex[:24]  # of this writer's block ids (`piece_block_id`)

    def _raise_mapped(self, exc: Exception, action: str) -> None:
        if isinstance(exc, AzureError):
            self._container.raise_mapped(exc, action, self._key)

    def _begin_commit(self, digests: Digests | None) -> None:
        """Either way, the last request sets metadata: ``sha256`` goes too."""
        if digests is not None:
            self._metadata = {**self._metadata, "sha256": digests.sha256}

    def _start_parts(self) -> None:
        """A taken name raises KeyTaken before any block is staged: Azure cannot delete the uncommitted
        blocks of a name a committed blob holds."""
        self._guard.check()

    def take_over(self, state: UploadState, uncommitted: Mapping[str, int]) -> bool:
        """Go on with the blocks of `state` when every one is among the blob's `uncommitted` blocks (id →
        size) with its size, and its id names its piece's CRC32C; False when not."""
        nonce, blocks = state.handle.get("nonce"), list(state.handle.get("blocks") or [])
        if not isinstance(nonce, str) or len(nonce) != 24 or len(blocks) != len(state.pieces):
            return False
        for number, (piece, name) in enumerate(zip(state.pieces, blocks, strict=True), 1):
            if name != piece_block_id(nonce, number, piece.crc32c) or uncommitted.get(name) != piece.size:
                return False
        self._nonce = nonce
        self._resume_from(state, blocks)
        return True

    def _send_part(self, number: int, part: tuple[bytes, ...]) -> str:
        """Put Block, with a transactional MD5 that Azure checks; returns the block id, which names the
        part's CRC32C (`piece_block_id`)."""
        (body,) = part  # joined by `PartedWriter._part_of`: the SDK wants one body for its MD5 and its request
        name = piece_block_id(self._nonce, number, crc32c_b64(body))
        self._blob.stage_block(name, body, length=len(body), validate_content="md5", **self._container.scope())
        return name

    def _piece_crc32c(self, part: tuple[bytes, ...], answer: str) -> str:
        """The CRC32C the block id names: computed once, before the block was staged."""
        return piece_crc32c(answer)

    def _handle(self, answers: list[str]) -> Mapping[str, Any]:
        """The writer's nonce and the ids of the blocks staged."""
        return {"nonce": self._nonce, "blocks": list(answers)}

    def _send_whole(self, body: bytes, digests: Digests | None) -> dict[str, Any]:
        """Put Blob, with content type, metadata and the MD5 of `digests` as Content-MD5 (checked)."""
        check: dict[str, Any] = {"validate_content": "md5"}  # Azure checks the body against this MD5
        if digests is not None and digests.md5:  # ... computed while streaming, rather than again here
            check = {"transactional_content_md5": base64.b64decode(digests.md5)}
        settings = content_settings(self._content_type, digests)
        self._guard.head_first()
        return self._blob.upload_blob(
            body, length=len(body), overwrite=True, metadata=self._metadata, content_settings=settings, **check,
            **condition(self._guard), **self._container.scope(), **self._protection(),
        )

    def _finish_parts(self, parts: list[str], digests: Digests | None) -> dict[str, Any]:
        """Put Block List, with content type, metadata and the MD5 of `digests` as Content-MD5 (kept
        unchecked: the blocks were checked one by one)."""
        self._guard.head_first()
        response = self._blob.commit_block_list(
            [BlobBlock(block_id=name) for name in parts],
            content_settings=content_settings(self._content_type, digests),
            metadata=self._metadata,
            **condition(self._guard),
            **self._container.scope(),
            **self._protection(),
        )
        return dict(response)

    def _protection(self) -> dict[str, Any]:
        """The immutability policy and legal hold, counted from now, unless this write is unprotected."""
        return self._container.protected() if self._protect else {}

    def _discard(self) -> None:
        """Delete what was staged when no committed blob holds the name (`AzureContainer.discard_staged`)."""
        self._container.discard_staged(self._key, self._full_key)

    def _stored(self, response: Mapping[str, Any], digests: Digests | None) -> StoredObject:
        etag = str(response.get("etag") or "").strip('"') or None
        metadata = decode_header_metadata(self._metadata)
        return StoredObject(self._key, self._size, metadata, self._content_type, etag, checksums(digests),
                            response.get("version_id") or None)
