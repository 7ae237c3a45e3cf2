"""S3Bucket: what an S3 storage and its writers share.

The client, the bucket and prefix, what every upload carries (encryption, storage class, tags: the
``[storages.aws_s3]`` options; Object Lock, on a protected write; the checksum mode, from the client's
``request_checksum_calculation``),
the part threads, how a botocore error reads (`worker.storage.s3.errors`), and the clean-up of a key's
stale multipart uploads (see "Stale uploads" in `worker.storage.s3.storage`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, NoReturn
from urllib.parse import quote, urlencode

import structlog
from botocore import exceptions as boto

from config import S3Options, TransferTuning
from worker.storage.base import Retention
from worker.storage.errors import Scrubber
from worker.storage.parts import PartPool
from worker.storage.s3.errors import CHECKSUM_HINT, MD5_HINT, s3_error

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = structlog.get_logger(__name__)


def object_args(options: S3Options) -> dict[str, Any]:
    """What every PutObject and CreateMultipartUpload carries: encryption, storage class, tags."""
    args: dict[str, Any] = {}
    if options.s3_sse:
        args["ServerSideEncryption"] = options.s3_sse
    if options.s3_sse_kms_key_id:
        args["SSEKMSKeyId"] = options.s3_sse_kms_key_id
    if options.s3_storage_class:
        args["StorageClass"] = options.s3_storage_class
    if options.s3_tags:
        args["Tagging"] = urlencode(options.s3_tags, quote_via=quote)
    return args


def lock_args(retention: Retention | None, now: datetime | None = None) -> dict[str, Any]:
    """What a protected PutObject or CreateMultipartUpload carries for `retention`, written `now`:
    ObjectLockMode and ObjectLockRetainUntilDate, ObjectLockLegalHoldStatus."""
    if retention is None:
        return {}
    args: dict[str, Any] = {}
    until = retention.until(now or datetime.now(UTC))
    if until is not None:
        args |= {"ObjectLockMode": retention.mode, "ObjectLockRetainUntilDate": until}
    if "legal" in retention.holds:
        args["ObjectLockLegalHoldStatus"] = "ON"
    return args


class S3Bucket:
    """One bucket and prefix as storage `storage` writes them (see the module docstring)."""

    def __init__(
        self,
        storage: str,
        client: S3Client,
        name: str,
        prefix: str,
        tuning: TransferTuning,
        *,
        scrub: Scrubber,
        options: S3Options | None = None,
    ) -> None:
        self.storage, self.client, self.name, self.prefix, self.tuning = storage, client, name, prefix, tuning
        self.scrub = scrub
        required = getattr(client.meta.config, "request_checksum_calculation", None) == "when_required"
        self.checksum: Literal["crc32c", "md5"] = "md5" if required else "crc32c"
        self.object_args: dict[str, Any] = object_args(options) if options is not None else {}
        self.retention: Retention | None = None  # the storage's (`S3Storage`); a protected write carries it
        self.parts = PartPool(tuning.parts_in_flight, "s3-part")
        self._list_uploads = True  # False once the store refused to list pending uploads
        self.list_parts_page = 1000  # parts per ListParts page (S3's most), when a resumed upload is checked

    def raise_mapped(self, exc: Exception, action: str, key: str, *, missing: bool = False) -> NoReturn:
        """Raise the `worker.errors` exception (with its reason) for a botocore error; `missing`: a
        404 means no such key (FileNotFoundError). Anything else is raised unchanged."""
        where = f"s3 storage {self.storage!r}: {action} s3://{self.name}/{self.prefix}{key}"
        hint = CHECKSUM_HINT if self.checksum == "crc32c" else MD5_HINT
        error = s3_error(exc, where, self.scrub, hint, missing=missing)
        if error is None:
            raise exc
        raise error from exc

    def abort_stale_uploads(self, full_key: str) -> None:
        """Abort every pending multipart upload of exactly `full_key` (see "Stale uploads" in
        `worker.storage.s3.storage`). Never raises: a refusal or failure is logged, and the new upload
        goes ahead."""
        if not self._list_uploads:
            return
        markers: dict[str, Any] = {}
        try:
            while True:
                page = self.client.list_multipart_uploads(Bucket=self.name, Prefix=full_key, **markers)
                for upload in page.get("Uploads", []):
                    if upload.get("Key") == full_key and upload.get("UploadId"):  # not a longer key
                        self.client.abort_multipart_upload(Bucket=self.name, Key=full_key,
                                                           UploadId=upload["UploadId"])
                        log.warning("storage_stale_upload_aborted", storage=self.storage, key=full_key,
                                    initiated=str(upload.get("Initiated", "")))
                if not page.get("IsTruncated") or not page.get("NextUploadIdMarker"):
                    return
                markers = {"KeyMarker": page.get("NextKeyMarker", full_key),
                           "UploadIdMarker": page["NextUploadIdMarker"]}
        except (boto.ClientError, boto.BotoCoreError) as exc:
            code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, boto.ClientError) else ""
            if code in ("AccessDenied", "NotImplemented"):
                self._list_uploads = False  # the policy (or store) will not change while we run: say it once
            log.warning("storage_stale_upload_cleanup_failed", storage=self.storage, key=full_key,
                        reason=self.scrub(str(exc)),
                        note="pending uploads of this key are left to the bucket's lifecycle rule")

    def close(self) -> None:
        """Stop the part-upload threads and the client's connections. Idempotent."""
        self.parts.close()
        self.client.close()
