"""S3Storage: Amazon S3 or any S3-compatible store (``storage_type = "s3"``), through boto3.

Objects live at ``s3://<bucket>/<prefix><key>``, always addressed path-style (no wildcard DNS needed).

Writing streams. An object no larger than ``multipart_threshold`` (or than one part) goes up as one
PutObject at commit. A larger one becomes a multipart upload once its first ``part_size`` part is
full; parts go up from a thread pool with at most ``parts_in_flight`` in flight (``write`` blocks
beyond that), and commit completes the upload with the ETags in order. Memory per writer: about
``part_size × (parts_in_flight + 1)`` plus one incoming chunk during a multipart upload, whatever the
object's size, and at most ``2 × (multipart_threshold + part_size)`` for a moment at the commit of a
single PUT. Any failure, and ``abort``, aborts the multipart upload: none is left pending.

Differences from the local backend: S3 user metadata travels in HTTP headers (ASCII only, spaces at
the ends lost), so metadata *values* are percent-encoded on write (`urllib.parse.quote` of ``%``,
space, controls and non-ASCII) and decoded by `stat`; other S3 tools see the encoded text. Metadata
*keys* must be ASCII letters, digits, ``-_.`` (ValueError) and come back lowercased. A stat in a
missing bucket says FileNotFoundError (HEAD gets a bare 404 either way); a write there is refused.

Options (``[storages.aws_s3]``): ``s3_sse`` / ``s3_sse_kms_key_id``, ``s3_storage_class`` and
``s3_tags`` go on every PutObject and CreateMultipartUpload (ServerSideEncryption, SSEKMSKeyId,
StorageClass, Tagging). Credentials and roles: `worker.storage.s3.client`.

Object Lock (``s3_object_lock_mode`` + ``s3_object_lock_days``, ``s3_legal_hold``): every protected
PutObject and CreateMultipartUpload carries ObjectLockMode, ObjectLockRetainUntilDate (now + the days,
whole seconds) and ObjectLockLegalHoldStatus, so the object is locked from the moment it exists. S3
wants a checksum on such a request (Content-MD5 or an ``x-amz-sdk-checksum-algorithm``): every
PutObject and every part here carries one, in either checksum mode. `protection` reads the lock back
from HeadObject (``x-amz-object-lock-*``, which S3 includes only for credentials allowed
s3:GetObjectRetention and s3:GetObjectLegalHold; moto_server has no GetObjectRetention at all, and
answers HeadObject with the lock). `write_once_problem` asks GetObjectLockConfiguration and
GetBucketVersioning. In a versioned bucket `delete` only adds a delete marker (every version stays);
`delete_version` deletes one version, which S3 refuses (403 AccessDenied "…protected by object lock":
ObjectLocked) while it is retained or held.

Checksums, by ``s3_request_checksum``:

- ``when_supported`` (boto3's default; AWS, moto): ``native_checksum = "crc32c"``. A single PUT carries
  the CRC32C from the commit digests (or SHA-256 when the digests have no CRC32C, or a CRC32C of the body
  when there are no digests), so the store checks the bytes; a multipart upload is created with a
  FULL_OBJECT CRC32C, each part carries its own CRC32C (computed by the writer with google-crc32c, so
  botocore needs no awscrt) and the completion carries the whole object's CRC32C and its size: from
  the digests, or combined from the parts' CRC32Cs when a transfer did not compute it over the stream
  (`native_checksum_for`: one pass over the bytes fewer). `stat` reports the full-object CRC32C the
  store keeps (``checksums["crc32c"]``).
- ``when_required`` (MinIO, R2, B2, Wasabi, Ceph, ...): botocore adds no ``x-amz-checksum-*`` header and
  validates no response checksum; every PUT body and every part carries a ``Content-MD5`` computed by the
  writer, which these stores check. ``native_checksum = None``: S3 keeps no whole-object MD5 of a
  multipart upload (its ETag is an MD5 of the parts' MD5s, and with SSE-KMS not an MD5 at all), so `stat`
  has nothing comparable to report.

In both modes a single PUT also carries ``sha256`` in its metadata; a multipart upload cannot (its
metadata is fixed before the first byte).

Never overwrite (`worker.storage.create_only`): with ``create_only = "condition"`` PutObject and
CompleteMultipartUpload carry ``If-None-Match: *``, and S3 answers 412 PreconditionFailed (KeyTaken)
when the key holds an object; the refused upload is then aborted like any failed one. With
``"head"`` a HeadObject comes right before either request instead. Before CreateMultipartUpload a
HeadObject checks the key in both modes, so that no part goes up for a taken key. A store that
answers NotImplemented for If-None-Match (AWS before August 2024, some S3-compatible stores) is
refused with a hint to set ``create_only = "head"``.

Stale uploads: a worker killed mid-transfer (SIGKILL, OOM, a lost machine) cannot abort its multipart
upload, and S3 keeps (and bills) it until a lifecycle rule removes it. So before a writer creates its
multipart upload it aborts every pending upload of exactly the same key (`S3Bucket.abort_stale_uploads`). That
is safe because one key is written by one transfer (one file → one transfer per storage, its key derived
from the file), and the ledger's lease with its fencing token lets only one worker run that transfer:
a pending upload of the key belongs to an attempt whose lease is gone. If that worker is only paused
and comes back, aborting its upload is right too: it can no longer complete it. (Two storages set up
on the same bucket and prefix would share keys: one may then abort the other's upload, which costs
that transfer a retry, never a file.) Listing pending uploads needs ``s3:ListBucketMultipartUploads``;
without it the clean-up is skipped (logged once) and the bucket's ``AbortIncompleteMultipartUpload``
lifecycle rule is the only clean-up.

Resume (`resume_writer`, issue 18): a writer's `durable` state is its multipart upload's id, the ETags,
sizes and CRC32Cs of the parts S3 acknowledged (contiguous from part 1), and a digest of what
CreateMultipartUpload fixed (`S3Writer.settings`). A later attempt, in any process, resumes it after
ListParts (every page, up to the state's last part) shows each of those parts with the same size and ETag,
and the same CRC32C where S3 lists one ("crc32c" mode); otherwise (NoSuchUpload: aborted, expired or
completed; a part missing or different; other settings) `resume_writer` returns None and the caller starts
afresh. The resumed writer sends the next part numbers (S3 lets a part number be sent again, so parts an
earlier attempt sent past the state are replaced), and completes with the state's parts and the new ones,
the whole object's FULL_OBJECT CRC32C and size, and ``If-None-Match: *`` (or the HEAD) as a fresh one:
a key taken meanwhile is refused at completion (KeyTaken) and the upload aborted. It never runs
`abort_stale_uploads`: that would abort the upload it resumes. Object Lock, encryption, storage class,
tags, metadata and content type are fixed by CreateMultipartUpload, and S3 does not list them for a
pending upload: the resumed upload carries those of the attempt that created it, so it is resumed only
when `settings` is unchanged (a storage reconfigured meanwhile starts afresh, with its new settings). The
Object Lock's retain-until date was counted from that first attempt's CreateMultipartUpload, so the
object is retained until that date, a little less than the full period after its completion.

Links (`link`): a presigned GetObject URL, SigV4 (``X-Amz-Expires``: at most 7 days), at the endpoint and
path-style address the client uses; signing sends nothing. It lasts no longer than the credentials that
signed it: with ``s3_role_arn`` the role's session (an hour by default) cuts a longer ``ttl`` short.

Holds and erasure (every version by VersionId, delete markers too): `worker.storage.s3.versions`.

Errors map at this edge (`worker.storage.s3.errors`, with a ``reason``); a missing key on stat/read is
FileNotFoundError. Messages name the storage, bucket, key, S3 code and message, never a credential.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, Self

from botocore import exceptions as boto

from config import S3Options, StorageConfig, TransferTuning
from worker.errors import KeyRefused, LinkUnavailable
from worker.storage.base import (
    MAX_SIGNED_TTL,
    Capabilities,
    ObjectVersion,
    ObjectWriter,
    Protection,
    Retention,
    Storage,
    StoredObject,
    UploadState,
)
from worker.storage.create_only import guard
from worker.storage.errors import Scrubber, public_url
from worker.storage.keys import check_key, check_prefix, decode_header_metadata, encode_header_metadata
from worker.storage.s3 import versions
from worker.storage.s3.bucket import S3Bucket
from worker.storage.s3.client import make_client, presign_with_sigv4
from worker.storage.s3.writer import S3Writer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["S3Storage", "encode_metadata", "make_client"]

MAX_KEY_BYTES = 1024
_META_KEY = re.compile(r"[A-Za-z0-9._-]+")


def encode_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """Percent-encode values for S3's ASCII headers. Raises ValueError for a non-ASCII key."""
    rule = "S3 metadata keys must be ASCII letters, digits, '-', '_' or '.'"
    return encode_header_metadata(metadata, _META_KEY, rule)


class S3Storage(Storage):
    """Objects in one bucket, under one prefix."""

    storage_type = "s3"
    capabilities = Capabilities(multipart=True, native_checksum="crc32c", content_checksums=frozenset({"sha256"}),
                                links=True, legal_hold=True)  # per instance: see __init__

    def __init__(
        self,
        name: str,
        client: S3Client,
        *,
        bucket: str,
        prefix: str = "",
        tuning: TransferTuning,
        endpoint: str | None = None,
        secrets: Sequence[str] = (),
        options: S3Options | None = None,
    ) -> None:
        """`secrets` are scrubbed from every error message; `options` give encryption, storage class
        and tags (the checksum mode comes from the client's config). Raises ValueError for a bad prefix."""
        super().__init__(name)
        self.prefix, self.tuning = check_prefix(prefix), tuning
        self.bucket = S3Bucket(name, client, bucket, self.prefix, tuning, scrub=Scrubber(secrets), options=options)
        self.endpoint = public_url(endpoint) if endpoint else None
        # per instance, as the checksum mode is per storage: "when_required" stores get no CRC32C
        self.capabilities = Capabilities(multipart=True,
                                         native_checksum="crc32c" if self.bucket.checksum == "crc32c" else None,
                                         content_checksums=frozenset({"sha256"}),  # every PUT replaces metadata
                                         links=True, legal_hold=True)  # in a bucket with Object Lock
        presign_with_sigv4(client)

    @classmethod
    def from_config(cls, config: StorageConfig, tuning: TransferTuning) -> Self:
        """Build the client from ``config.aws_s3`` (nothing is sent yet). Raises ValueError when that
        table is missing."""
        options = config.aws_s3
        if options is None:
            raise ValueError(f"storage {config.name!r}: storage_type 's3' needs an aws_s3 table")
        secrets = [s.get_secret_value() for s in (options.s3_api_key, options.s3_secret) if s]
        client = make_client(options, tuning, name=config.name)
        storage = cls(
            config.name, client, bucket=config.bucket, prefix=config.path, tuning=tuning,
            endpoint=options.s3_custom_endpoint_url, secrets=secrets, options=options,
        )  # fmt: skip
        storage.protect_with(Retention.of(config))
        return storage

    def protect_with(self, retention: Retention | None) -> None:
        """Every protected write from now on carries `retention` (Object Lock; None: none)."""
        self.retention = self.bucket.retention = retention

    @property
    def client(self) -> S3Client:
        return self.bucket.client

    def full_key(self, key: str) -> str:
        """``prefix + key``. Raises KeyRefused (a ValueError) for an illegal or over-long key, or
        one with CR or LF."""
        full = self.prefix + check_key(key)
        if "\r" in full or "\n" in full:  # AWS lists them among characters to avoid; XML 1.0 listings lose them
            raise KeyRefused(f"S3 keys cannot hold CR or LF here: {key!r}")
        if len(full.encode()) > MAX_KEY_BYTES:
            raise KeyRefused(f"S3 keys are at most {MAX_KEY_BYTES} bytes: {full[:60]!r}...")
        return full

    def raise_mapped(self, exc: Exception, action: str, key: str, *, missing: bool = False) -> NoReturn:
        """See `S3Bucket.raise_mapped`."""
        self.bucket.raise_mapped(exc, action, key, missing=missing)

    def open_writer(
        self, key: str, *, content_type: str, metadata: Mapping[str, str], size_hint: int | None = None,
        overwrite: bool = False, protect: bool = True,
    ) -> ObjectWriter:
        """Nothing is sent until the first part is full or commit. Raises ValueError for an illegal
        key or metadata key; `size_hint` is not needed. Create-only unless `overwrite` (see "Never
        overwrite" above); Object Lock unless not `protect`."""
        return S3Writer(self.bucket, key, self.full_key(key), content_type, encode_metadata(metadata),
                        guard(self, key, overwrite=overwrite), protect=protect)

    def resume_writer(
        self, key: str, state: UploadState, *, content_type: str, metadata: Mapping[str, str],
        size_hint: int | None = None, overwrite: bool = False, protect: bool = True,
    ) -> ObjectWriter | None:
        """The multipart upload of `state`, checked with ListParts (see "Resume" above); None when S3 no
        longer holds it as it was. Raises ValueError for an illegal key or metadata key, StorageRefused /
        StorageUnavailable when S3 cannot be asked."""
        writer = S3Writer(self.bucket, key, self.full_key(key), content_type, encode_metadata(metadata),
                          guard(self, key, overwrite=overwrite), protect=protect)
        upload_id = state.handle.get("upload_id")
        if not state.pieces or not isinstance(upload_id, str) or not upload_id:
            return None
        listed = self._list_parts(key, upload_id, len(state.pieces))
        return writer if listed is not None and writer.take_over(state, listed) else None

    def _list_parts(self, key: str, upload_id: str, last: int) -> dict[int, dict[str, Any]] | None:
        """ListParts of `upload_id`, every page up to part `last`, by part number; None for NoSuchUpload."""
        found: dict[int, dict[str, Any]] = {}
        marker: dict[str, Any] = {}
        while True:
            try:
                page = self.client.list_parts(Bucket=self.bucket.name, Key=self.full_key(key), UploadId=upload_id,
                                              MaxParts=self.bucket.list_parts_page, **marker)
            except boto.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchUpload", "404", "NoSuchKey"):
                    return None
                self.raise_mapped(exc, "list the parts of", key)
            except boto.BotoCoreError as exc:
                self.raise_mapped(exc, "list the parts of", key)
            for part in page.get("Parts", []):
                found[int(part["PartNumber"])] = dict(part)
            following = page.get("NextPartNumberMarker")
            if not page.get("IsTruncated") or not following or int(following) >= last:
                return found
            marker = {"PartNumberMarker": int(following)}

    def stat(self, key: str) -> StoredObject:
        """HEAD the object (asking for its checksum). Raises FileNotFoundError, ValueError,
        StorageRefused / StorageUnavailable."""
        extra: dict[str, Any] = {"ChecksumMode": "ENABLED"} if self.bucket.checksum == "crc32c" else {}
        try:
            head = self.client.head_object(Bucket=self.bucket.name, Key=self.full_key(key), **extra)
        except (boto.ClientError, boto.BotoCoreError) as exc:
            self.raise_mapped(exc, "stat", key, missing=True)
        metadata = decode_header_metadata(head.get("Metadata", {}))
        checksums = {"sha256": metadata["sha256"]} if "sha256" in metadata else {}
        crc32c = head.get("ChecksumCRC32C", "")
        if crc32c and "-" not in crc32c and head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
            checksums["crc32c"] = crc32c  # a COMPOSITE one ("…-N") is a checksum of checksums
        etag = head.get("ETag", "").strip('"') or None
        return StoredObject(key, head["ContentLength"], metadata, head.get("ContentType"), etag, checksums,
                            head.get("VersionId") or None)

    def protection(self, key: str) -> Protection:
        """The current version's Object Lock, from HeadObject (see "Object Lock" above). Raises
        FileNotFoundError, ValueError, StorageRefused / StorageUnavailable."""
        try:
            head = self.client.head_object(Bucket=self.bucket.name, Key=self.full_key(key))
        except (boto.ClientError, boto.BotoCoreError) as exc:
            self.raise_mapped(exc, "read the retention of", key, missing=True)
        until = head.get("ObjectLockRetainUntilDate")
        return Protection(until if isinstance(until, datetime) else None, head.get("ObjectLockMode") or None,
                          ("legal",) if head.get("ObjectLockLegalHoldStatus") == "ON" else (),
                          head.get("VersionId") or None)

    def write_once_problem(self) -> str | None:
        """Object Lock on the bucket (GetObjectLockConfiguration) and versioning (GetBucketVersioning),
        when ``retention`` asks for anything. Raises StorageRefused / StorageUnavailable."""
        if self.retention is None:
            return None
        name = self.bucket.name
        try:
            config = self.client.get_object_lock_configuration(Bucket=name).get("ObjectLockConfiguration", {})
        except boto.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ObjectLockConfigurationNotFoundError":
                self.raise_mapped(exc, "read the Object Lock configuration of", "")
            config = {}
        except boto.BotoCoreError as exc:
            self.raise_mapped(exc, "read the Object Lock configuration of", "")
        if config.get("ObjectLockEnabled") != "Enabled":
            return (f"bucket {name} has no Object Lock: S3 keeps retention and legal holds only in a bucket with "
                    "Object Lock enabled (at its creation, or since; it turns versioning on)")
        try:
            status = self.client.get_bucket_versioning(Bucket=name).get("Status")
        except (boto.ClientError, boto.BotoCoreError) as exc:
            self.raise_mapped(exc, "read the versioning of", "")
        return None if status == "Enabled" else f"bucket {name} is not versioned (Object Lock needs versioning)"

    def delete_version(self, key: str, version: str) -> None:
        """DeleteObject of exactly `version`. Raises ObjectLocked (retained or held), ValueError,
        StorageRefused / StorageUnavailable."""
        try:
            self.client.delete_object(Bucket=self.bucket.name, Key=self.full_key(key), VersionId=version)
        except (boto.ClientError, boto.BotoCoreError) as exc:
            self.raise_mapped(exc, "delete a version of", key)

    def release_holds(self, key: str, version: str | None = None) -> None:
        """PutObjectLegalHold OFF on `version` (default: the current one). Raises FileNotFoundError,
        ValueError, StorageRefused / StorageUnavailable."""
        extra: dict[str, Any] = {"VersionId": version} if version else {}
        try:
            self.client.put_object_legal_hold(Bucket=self.bucket.name, Key=self.full_key(key),
                                              LegalHold={"Status": "OFF"}, **extra)
        except (boto.ClientError, boto.BotoCoreError) as exc:
            self.raise_mapped(exc, "release the legal hold of", key, missing=True)

    def read(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """GET the object, streamed. Raises FileNotFoundError at once when there is none;
        StorageRefused / StorageUnavailable (also while iterating)."""
        try:
            body = self.client.get_object(Bucket=self.bucket.name, Key=self.full_key(key))["Body"]
        except (boto.ClientError, boto.BotoCoreError) as exc:
            self.raise_mapped(exc, "read", key, missing=True)
        return self._chunks(body, key, chunk_size)

    def _chunks(self, body: Any, key: str, chunk_size: int) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(chunk_size)
        except (boto.ClientError, boto.BotoCoreError) as exc:
            self.raise_mapped(exc, "read", key)
        finally:
            body.close()

    def delete(self, key: str) -> None:
        """Remove the object; missing is fine. Raises ValueError, StorageRefused / StorageUnavailable."""
        try:
            self.client.delete_object(Bucket=self.bucket.name, Key=self.full_key(key))
        except (boto.ClientError, boto.BotoCoreError) as exc:
            self.raise_mapped(exc, "delete", key)

    def versions(self, key: str) -> list[ObjectVersion]:
        """Every version and delete marker of `key`, each with its hold and retention: see
        `worker.storage.s3.versions`. Raises ValueError, StorageRefused / StorageUnavailable."""
        return versions.list_versions(self, key)

    def erase(self, key: str) -> list[ObjectVersion]:
        """Delete every version and delete marker of `key` by VersionId. Raises ErasureRefused,
        ValueError, StorageRefused / StorageUnavailable."""
        return versions.erase(self, key)

    def set_legal_hold(self, key: str, on: bool) -> list[ObjectVersion]:
        """PutObjectLegalHold on every version of `key` (a bucket with Object Lock), read back. Raises
        FileNotFoundError, StorageRefused (no Object Lock: reason "permission"), StorageUnavailable."""
        return versions.set_legal_hold(self, key, on)

    def link(self, key: str, ttl: timedelta) -> str:
        """A SigV4 presigned GetObject URL valid for `ttl` (whole seconds, rounded up). Sends nothing
        (an assumed role's credentials may be fetched first). Raises LinkUnavailable past 7 days,
        ValueError, StorageRefused (reason "credentials": none to sign with)."""
        if ttl > MAX_SIGNED_TTL:
            raise LinkUnavailable(f"{self.describe()}: S3 presigned URLs last at most 7 days, not {ttl}")
        params = {"Bucket": self.bucket.name, "Key": self.full_key(key)}
        try:
            return self.client.generate_presigned_url("get_object", Params=params,
                                                      ExpiresIn=max(1, math.ceil(ttl.total_seconds())))
        except (boto.ClientError, boto.BotoCoreError) as exc:
            self.raise_mapped(exc, "link", key)

    def native_checksum_for(self, size: int | None) -> str | None:
        """CRC32C of the stream for an object that may go up in one PUT; a multipart upload's
        whole-object CRC32C is combined from its parts' (`S3Writer`), which are computed anyway:
        one pass over the bytes fewer (bench/)."""
        multipart = size is not None and size > max(self.tuning.multipart_threshold, self.tuning.part_size)
        return None if multipart else self.capabilities.native_checksum

    def describe(self) -> str:
        where = f"s3://{self.bucket.name}/{self.prefix}"
        return f"{where} at {self.endpoint}" if self.endpoint else where

    def close(self) -> None:
        """Stop the part-upload threads and the client's connections. Idempotent."""
        self.bucket.close()
