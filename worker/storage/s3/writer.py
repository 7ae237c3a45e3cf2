"""The S3 streaming writer: one PutObject, or a multipart upload with bounded parts in flight.

See `worker.storage.s3.storage` for the memory bound, the checksums sent in each mode and the error mapping
(and "Resume" there for `resumed`), and `worker.storage.parts` for the buffering and the parts in flight.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from io import SEEK_CUR, SEEK_END, SEEK_SET, RawIOBase
from typing import IO, TYPE_CHECKING, Any, cast

import structlog
from botocore import exceptions as boto

from worker.errors import VerificationFailed
from worker.storage.base import StoredObject, UploadState
from worker.storage.checksums import Digests, b64, crc32c_b64, crc32c_of_parts, md5_b64
from worker.storage.keys import decode_header_metadata
from worker.storage.parts import PartedWriter
from worker.storage.s3.bucket import lock_args

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

    from worker.storage.create_only import Guard
    from worker.storage.s3.bucket import S3Bucket

log = structlog.get_logger(__name__)


class _Chunks(RawIOBase):
    """A request body sent as the chunks it was written in, one send each, with no copy: botocore
    would turn bytes into a file that urllib3 reads in 16 KiB blocks, one send each (65,536 system
    calls per GiB), and joining a part's chunks first copies every byte once more. Every read returns
    the next whole chunk, whatever size is asked; botocore seeks back to 0 on a retry."""

    def __init__(self, chunks: tuple[bytes, ...]) -> None:
        super().__init__()
        self._chunks, self._next, self._at = chunks, 0, 0
        self.size = sum(len(chunk) for chunk in chunks)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        while self._next < len(self._chunks):
            chunk = self._chunks[self._next]
            self._next += 1
            if chunk:
                self._at += len(chunk)
                return chunk
        return b""

    def readall(self) -> bytes:
        rest = b"".join(self._chunks[self._next :])
        self._next, self._at = len(self._chunks), self.size
        return rest

    def tell(self) -> int:
        return self._at

    def seek(self, offset: int, whence: int = SEEK_SET) -> int:
        """Only to the start, or to where it is (or its end): a chunk is sent whole or not at all."""
        target = {SEEK_SET: offset, SEEK_CUR: self._at + offset, SEEK_END: self.size + offset}[whence]
        if target == 0:
            self._next, self._at = 0, 0
        elif target == self.size:
            self._next, self._at = len(self._chunks), self.size
        elif target != self._at:
            raise OSError(f"a chunked request body seeks to its start or its end, not to byte {target}")
        return self._at


class S3Writer(PartedWriter["CompletedPartTypeDef"]):
    """One PutObject, or a multipart upload with a bounded number of parts in flight.

    A part is sent as a `_Chunks` of the chunks written, the body of a PutObject as one: no copy
    by the writer or by botocore, one send per chunk by urllib3."""

    def __init__(
        self, bucket: S3Bucket, key: str, full_key: str, content_type: str, metadata: dict[str, str], guard: Guard,
        *, protect: bool = True,
    ) -> None:
        super().__init__(key, bucket.tuning, bucket.parts.submit)
        self._bucket, self._full_key, self._guard = bucket, full_key, guard
        self._protect = protect  # Object Lock on the upload (S3 requires a checksum with it: every request has one)
        self._content_type, self._metadata = content_type, metadata
        self._upload_id = ""  # CreateMultipartUpload's
        self._part_sizes: dict[int, int] = {}  # part number → bytes (set by the part threads)

    def settings(self) -> str:
        """A digest of what CreateMultipartUpload fixes for the whole upload (the key, content type,
        metadata, encryption, storage class, tags, the Object Lock asked for, the checksum mode): a resumed
        upload keeps its own, so it is resumed only when they are still the same (`take_over`)."""
        retention = self._bucket.retention if self._protect else None
        lock = [retention.days, retention.mode, list(retention.holds)] if retention is not None else None
        fixed = [self._bucket.name, self._full_key, self._content_type, self._metadata, self._bucket.object_args, lock,
                 self._bucket.checksum]
        return hashlib.sha256(json.dumps(fixed, sort_keys=True, default=str).encode()).hexdigest()[:32]

    def _raise_mapped(self, exc: Exception, action: str) -> None:
        if isinstance(exc, (boto.ClientError, boto.BotoCoreError)):
            self._bucket.raise_mapped(exc, action, self._key)

    def _begin_commit(self, digests: Digests | None) -> None:
        """Raises VerificationFailed when `digests` describe another size than was written."""
        if digests is not None and digests.size != self._size:
            raise VerificationFailed(
                f"s3 storage {self._bucket.storage!r}: digests describe {digests.size} bytes for {self._key!r}, "
                f"{self._size} were written"
            )

    def _fits_one_request(self) -> bool:
        """Also an object smaller than one part (a threshold below the part size): one PutObject. One
        past the threshold by less than a part becomes a multipart upload at commit."""
        return super()._fits_one_request() or (not self._parted and self._size < self._bucket.tuning.part_size)

    def _start_parts(self) -> None:
        self._guard.check()  # no part goes up for a taken key
        # An earlier attempt killed mid-upload left its upload pending: only one transfer writes this
        # key, and its lease says this attempt is the live one (see "Stale uploads" in worker.storage.s3.storage).
        self._bucket.abort_stale_uploads(self._full_key)
        full_object: dict[str, Any] = {"ChecksumAlgorithm": "CRC32C", "ChecksumType": "FULL_OBJECT"}
        created = self._bucket.client.create_multipart_upload(
            Bucket=self._bucket.name,
            Key=self._full_key,
            ContentType=self._content_type,
            Metadata=self._metadata,
            **self._bucket.object_args,
            **self._lock(),
            **(full_object if self._bucket.checksum == "crc32c" else {}),
        )
        self._upload_id = created["UploadId"]

    def _part_of(self, pieces: list[bytes]) -> tuple[bytes, ...]:
        """The chunks as they are: `_Chunks` sends them one after the other, never joined."""
        return tuple(pieces)

    def _send_part(self, number: int, part: tuple[bytes, ...]) -> CompletedPartTypeDef:
        body = _Chunks(part)
        checksum = self._body_checksum(part)
        response = self._bucket.client.upload_part(
            Bucket=self._bucket.name,
            Key=self._full_key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=cast("IO[bytes]", body),  # a file to botocore (typed as IO, not as RawIOBase)
            ContentLength=body.size,
            **checksum,
        )
        self._part_sizes[number] = body.size
        completed: CompletedPartTypeDef = {"PartNumber": number, "ETag": response["ETag"]}
        if "ChecksumCRC32C" in checksum:
            completed["ChecksumCRC32C"] = checksum["ChecksumCRC32C"]
        return completed

    def _piece_crc32c(self, part: tuple[bytes, ...], answer: CompletedPartTypeDef) -> str:
        """The CRC32C the part carried ("crc32c" mode: computed once over its chunks, for the request),
        else one computed now over its chunks ("md5" mode)."""
        return answer.get("ChecksumCRC32C") or crc32c_b64(part)

    def _handle(self, answers: list[CompletedPartTypeDef]) -> Mapping[str, Any]:
        """The upload id, the parts' ETags, and `settings`."""
        return {"upload_id": self._upload_id, "etags": [answer["ETag"] for answer in answers],
                "settings": self.settings()}

    def take_over(self, state: UploadState, listed: Mapping[int, Mapping[str, Any]]) -> bool:
        """Go on with the upload of `state` when ListParts (`listed`, by part number) shows every one of its
        parts with the same size and ETag (and CRC32C, where the store lists one); False when it does not."""
        etags = list(state.handle.get("etags") or [])
        answers: list[CompletedPartTypeDef] = []
        if len(etags) != len(state.pieces) or state.handle.get("settings") != self.settings():
            return False
        for number, (piece, etag) in enumerate(zip(state.pieces, etags, strict=True), 1):
            part = listed.get(number)
            if part is None or part.get("Size") != piece.size:
                return False
            if str(part.get("ETag")).strip('"') != str(etag).strip('"'):
                return False
            if part.get("ChecksumCRC32C") and part["ChecksumCRC32C"] != piece.crc32c:
                return False
            answer: CompletedPartTypeDef = {"PartNumber": number, "ETag": str(etag)}
            if self._bucket.checksum == "crc32c":
                answer["ChecksumCRC32C"] = piece.crc32c
            answers.append(answer)
            self._part_sizes[number] = piece.size
        self._upload_id = str(state.handle["upload_id"])
        self._resume_from(state, answers)
        return True

    def _body_checksum(self, body: tuple[bytes, ...], digests: Digests | None = None) -> dict[str, Any]:
        """The checksum a request carries for `body`: from `digests` when they describe it, else
        computed here (CRC32C in "crc32c" mode, Content-MD5 in "md5" mode)."""
        if self._bucket.checksum == "md5":
            return {"ContentMD5": md5_b64(body)}
        if digests is not None and digests.crc32c is None:
            return {"ChecksumAlgorithm": "SHA256", "ChecksumSHA256": b64(bytes.fromhex(digests.sha256))}
        crc32c = digests.crc32c if digests is not None and digests.crc32c else crc32c_b64(body)
        return {"ChecksumAlgorithm": "CRC32C", "ChecksumCRC32C": crc32c}

    def _send_whole(self, body: bytes, digests: Digests | None) -> Mapping[str, Any]:
        """PutObject with the checksum of `digests` (see `worker.storage.s3.storage`) and their ``sha256``."""
        if digests is not None:
            self._metadata = {**self._metadata, "sha256": digests.sha256}  # one request: labels go too
        self._guard.head_first()
        return self._bucket.client.put_object(
            Bucket=self._bucket.name,
            Key=self._full_key,
            Body=cast("IO[bytes]", _Chunks((body,))),
            ContentLength=len(body),
            ContentType=self._content_type,
            Metadata=self._metadata,
            **self._bucket.object_args,
            **self._lock(),
            **self._body_checksum((body,), digests),
            **self._condition(),
        )

    def _finish_parts(self, parts: list[CompletedPartTypeDef], digests: Digests | None) -> Mapping[str, Any]:
        """CompleteMultipartUpload, with the whole object's CRC32C (from `digests`, else combined from
        the parts') and its size: S3 checks both."""
        whole: dict[str, Any] = {}
        if self._bucket.checksum == "crc32c":
            whole = {"ChecksumType": "FULL_OBJECT", "MpuObjectSize": self._size}
            if digests is not None and digests.crc32c:
                whole["ChecksumCRC32C"] = digests.crc32c
            elif all("ChecksumCRC32C" in part for part in parts):
                whole["ChecksumCRC32C"] = crc32c_of_parts(
                    [(part["ChecksumCRC32C"], self._part_sizes[part["PartNumber"]]) for part in parts])
        self._guard.head_first()
        return self._bucket.client.complete_multipart_upload(
            Bucket=self._bucket.name,
            Key=self._full_key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": parts},
            **whole,
            **self._condition(),
        )

    def _lock(self) -> dict[str, Any]:
        """Object Lock for the storage's retention, counted from now, unless this write is unprotected."""
        return lock_args(self._bucket.retention) if self._protect else {}

    def _condition(self) -> dict[str, Any]:
        """``If-None-Match: *`` on the request that makes the object visible, unless it may replace one
        (or the storage checks with a HEAD instead)."""
        return {"IfNoneMatch": "*"} if self._guard.condition else {}

    def _discard(self) -> None:
        """AbortMultipartUpload: none is left pending."""
        try:
            self._bucket.client.abort_multipart_upload(
                Bucket=self._bucket.name, Key=self._full_key, UploadId=self._upload_id
            )
        except (boto.ClientError, boto.BotoCoreError) as exc:
            log.warning("storage_abort_failed", storage=self._bucket.storage, key=self._key, reason=str(exc))

    def _stored(self, response: Mapping[str, Any], digests: Digests | None) -> StoredObject:
        metadata = decode_header_metadata(self._metadata)
        checksums = {"sha256": metadata["sha256"]} if "sha256" in metadata else {}
        if "-" not in response.get("ChecksumCRC32C", "-"):
            checksums["crc32c"] = response["ChecksumCRC32C"]
        etag = str(response.get("ETag", "")).strip('"') or None
        version = str(response.get("VersionId") or "") or None
        return StoredObject(self._key, self._size, metadata, self._content_type, etag, checksums, version)
