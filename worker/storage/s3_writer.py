"""The S3 streaming writer: one PutObject, or a multipart upload with bounded parts in flight.

See `worker.storage.s3` for the memory bound, the checksums sent in each mode and the error mapping.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, wait
from contextlib import contextmanager
from io import BytesIO
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import structlog
from botocore import exceptions as boto

from worker.checksums import Digests, b64, crc32c_b64, md5_b64
from worker.errors import VerificationFailed
from worker.storage.base import ObjectWriter, StoredObject

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

    from worker.storage.s3 import S3Storage

log = structlog.get_logger(__name__)


class S3Writer(ObjectWriter):
    """One PutObject, or a multipart upload with a bounded number of parts in flight.

    Incoming chunks are kept as they are (no copy) until a part is full; a part is joined into one
    bytes object only once a slot is free, and sent as a BytesIO over it (no further copy by botocore
    over HTTP or HTTPS)."""

    def __init__(
        self, storage: S3Storage, key: str, full_key: str, content_type: str, metadata: dict[str, str]
    ) -> None:
        self._s, self._key, self._full_key = storage, key, full_key
        self._content_type, self._metadata = content_type, metadata
        self._pieces: list[bytes] = []  # the part being filled
        self._filled = 0
        self._held: list[list[bytes]] = []  # full parts kept while the object may still be one PUT
        self._size = 0
        self._upload_id: str | None = None
        self._parts: list[Future[CompletedPartTypeDef]] = []
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
        except (boto.ClientError, boto.BotoCoreError) as exc:
            self.abort()
            self._s.raise_mapped(exc, action, self._key)
        except BaseException:
            self.abort()
            raise

    def write(self, data: bytes) -> None:
        """Buffer `data`; send full parts once past the threshold, blocking while `parts_in_flight`
        parts are in flight. Raises StorageRefused / StorageUnavailable (the writer is then aborted)."""
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
                    self._part_full()

    def commit(self, digests: Digests | None = None) -> StoredObject:
        """PutObject, or upload the last part and complete the multipart upload, with the checksums
        of `digests` (see `worker.storage.s3`). Raises StorageRefused / StorageUnavailable,
        VerificationFailed when `digests` do not describe the bytes written (the writer is then
        aborted); ValueError when closed."""
        with self._aborting_on_error("commit"):
            if digests is not None and digests.size != self._size:
                raise VerificationFailed(
                    f"s3 storage {self._s.name!r}: digests describe {digests.size} bytes for {self._key!r}, "
                    f"{self._size} were written"
                )
            if self._upload_id is None and self._held and self._size > self._s.tuning.multipart_threshold:
                self._upload_id = self._create_upload()  # past the threshold by less than a part
            if self._upload_id is None and digests is not None:
                self._metadata = {**self._metadata, "sha256": digests.sha256}  # one request: labels go too
            if self._upload_id is None:
                response = self._put(digests)
            else:
                response = self._complete(self._upload_id, digests)
        self._state = "committed"
        return self._stored(response)

    def _stored(self, response: Mapping[str, Any]) -> StoredObject:
        metadata = {name: unquote(value) for name, value in self._metadata.items()}
        checksums = {"sha256": metadata["sha256"]} if "sha256" in metadata else {}
        if "-" not in response.get("ChecksumCRC32C", "-"):
            checksums["crc32c"] = response["ChecksumCRC32C"]
        etag = str(response.get("ETag", "")).strip('"') or None
        return StoredObject(self._key, self._size, metadata, self._content_type, etag, checksums)

    def abort(self) -> None:
        """Cancel queued parts, wait for running ones, abort the multipart upload. Never raises: a
        failure is logged so that it cannot hide the error that led here."""
        if self._state != "open":
            return
        self._state = "aborted"
        self._pieces, self._held = [], []
        for future in self._parts:
            future.cancel()
        wait(self._parts)
        if self._upload_id is not None:
            try:
                self._s.client.abort_multipart_upload(
                    Bucket=self._s.bucket, Key=self._full_key, UploadId=self._upload_id
                )
            except (boto.ClientError, boto.BotoCoreError) as exc:
                log.warning("storage_abort_failed", storage=self._s.name, key=self._key, reason=str(exc))

    def _part_full(self) -> None:
        pieces, self._pieces, self._filled = self._pieces, [], 0
        self._held.append(pieces)
        if self._upload_id is None and self._size <= self._s.tuning.multipart_threshold:
            return  # may still be a single PUT
        self._upload_id = self._upload_id or self._create_upload()
        held, self._held = self._held, []
        for part in held:
            self._submit(part)

    def _create_upload(self) -> str:
        full_object: dict[str, Any] = {"ChecksumAlgorithm": "CRC32C", "ChecksumType": "FULL_OBJECT"}
        created = self._s.client.create_multipart_upload(
            Bucket=self._s.bucket,
            Key=self._full_key,
            ContentType=self._content_type,
            Metadata=self._metadata,
            **self._s.object_args,
            **(full_object if self._s.checksum == "crc32c" else {}),
        )
        return created["UploadId"]

    def _submit(self, pieces: list[bytes]) -> None:
        if self._failure is not None:
            raise self._failure  # a part failed: stop now rather than at commit
        self._slots.acquire()  # blocks while parts_in_flight parts are in flight
        part = b"".join(pieces)  # joined only now, so that memory stays bounded
        pieces.clear()
        future = self._s.submit(self._upload_part, len(self._parts) + 1, part)
        future.add_done_callback(self._part_done)
        self._parts.append(future)

    def _part_done(self, future: Future[CompletedPartTypeDef]) -> None:
        self._slots.release()
        if not future.cancelled() and future.exception() is not None and self._failure is None:
            self._failure = future.exception()

    def _upload_part(self, number: int, part: bytes) -> CompletedPartTypeDef:
        assert self._upload_id is not None
        checksum = self._body_checksum(part)
        response = self._s.client.upload_part(
            Bucket=self._s.bucket,
            Key=self._full_key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=BytesIO(part),
            ContentLength=len(part),
            **checksum,
        )
        completed: CompletedPartTypeDef = {"PartNumber": number, "ETag": response["ETag"]}
        if "ChecksumCRC32C" in checksum:
            completed["ChecksumCRC32C"] = checksum["ChecksumCRC32C"]
        return completed

    def _body_checksum(self, body: bytes, digests: Digests | None = None) -> dict[str, Any]:
        """The checksum a request carries for `body`: from `digests` when they describe it, else
        computed here (CRC32C in "crc32c" mode, Content-MD5 in "md5" mode)."""
        if self._s.checksum == "md5":
            return {"ContentMD5": md5_b64(body)}
        if digests is not None and digests.crc32c is None:
            return {"ChecksumAlgorithm": "SHA256", "ChecksumSHA256": b64(bytes.fromhex(digests.sha256))}
        crc32c = digests.crc32c if digests is not None and digests.crc32c else crc32c_b64(body)
        return {"ChecksumAlgorithm": "CRC32C", "ChecksumCRC32C": crc32c}

    def _put(self, digests: Digests | None) -> Mapping[str, Any]:
        body = b"".join(piece for part in [*self._held, self._pieces] for piece in part)
        self._pieces, self._held = [], []
        return self._s.client.put_object(
            Bucket=self._s.bucket,
            Key=self._full_key,
            Body=BytesIO(body),
            ContentLength=len(body),
            ContentType=self._content_type,
            Metadata=self._metadata,
            **self._s.object_args,
            **self._body_checksum(body, digests),
        )

    def _complete(self, upload_id: str, digests: Digests | None) -> Mapping[str, Any]:
        for part in [*self._held, self._pieces]:
            if part:
                self._submit(part)
        self._pieces, self._held = [], []
        parts = [future.result() for future in self._parts]
        whole: dict[str, Any] = {}
        if self._s.checksum == "crc32c":
            whole = {"ChecksumType": "FULL_OBJECT", "MpuObjectSize": self._size}
            if digests is not None and digests.crc32c:
                whole["ChecksumCRC32C"] = digests.crc32c
        return self._s.client.complete_multipart_upload(
            Bucket=self._s.bucket, Key=self._full_key, UploadId=upload_id, MultipartUpload={"Parts": parts}, **whole
        )
