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

Errors map at this edge: credentials, permission, missing bucket and other 4xx → StorageRefused; 5xx,
throttling, timeouts, connection errors → StorageUnavailable; a missing key on stat/read →
FileNotFoundError. Messages name the storage, bucket, key, S3 code and message, never a credential.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NoReturn, Self
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import boto3
import structlog
from botocore import exceptions as boto
from botocore.config import Config

from config.settings import S3Options, StorageConfig, TransferTuning
from worker.errors import StorageRefused, StorageUnavailable
from worker.storage.base import Capabilities, ObjectWriter, Storage, StoredObject
from worker.storage.keys import check_key, check_prefix
from worker.storage.s3_writer import S3Writer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MAX_KEY_BYTES = 1024
_UNAVAILABLE_CODES = frozenset(
    "SlowDown RequestTimeout InternalError ServiceUnavailable Throttling ThrottlingException RequestLimitExceeded"
    " TooManyRequests RequestThrottled OperationAborted NoSuchUpload BandwidthLimitExceeded".split()
)
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_UNAVAILABLE_ERRORS = (boto.ConnectionError, boto.HTTPClientError, boto.IncompleteReadError, boto.FlexibleChecksumError)
_REFUSED_ERRORS = (boto.NoCredentialsError, boto.PartialCredentialsError)
_META_KEY = re.compile(r"[A-Za-z0-9._-]+")
_META_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")

log = structlog.get_logger(__name__)


def make_client(options: S3Options, tuning: TransferTuning, *, max_attempts: int = 3) -> S3Client:
    """A boto3 S3 client: path-style, standard retries, timeouts and pool sized from `tuning`."""
    config = Config(
        region_name=options.s3_region,
        s3={"addressing_style": "path"},
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=tuning.connect_timeout.total_seconds(),
        read_timeout=tuning.read_timeout.total_seconds(),
        max_pool_connections=max(10, tuning.parts_in_flight + 2),
    )
    key, secret = options.s3_api_key, options.s3_secret
    return boto3.session.Session().client(
        "s3",
        region_name=options.s3_region,
        endpoint_url=options.s3_custom_endpoint_url,
        config=config,
        aws_access_key_id=key.get_secret_value() if key else None,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
    )


def public_endpoint(url: str) -> str:
    """`url` without user info, query string or fragment, for logs."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment=""))


def encode_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """Percent-encode values for S3's ASCII headers. Raises ValueError for a non-ASCII key."""
    for name in metadata:
        if not _META_KEY.fullmatch(name):
            raise ValueError(f"S3 metadata keys must be ASCII letters, digits, '-', '_' or '.': {name!r}")
    return {name: quote(value, safe=_META_SAFE) for name, value in metadata.items()}


class S3Storage(Storage):
    """Objects in one bucket, under one prefix."""

    storage_type = "s3"
    capabilities = Capabilities(multipart=True)

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
    ) -> None:
        """`secrets` are scrubbed from every error message. Raises ValueError for a bad prefix."""
        super().__init__(name)
        self.client, self.bucket, self.prefix, self.tuning = client, bucket, check_prefix(prefix), tuning
        self.endpoint = public_endpoint(endpoint) if endpoint else None
        self._secrets = [s for s in secrets if s]
        self._checksum = getattr(client.meta.config, "request_checksum_calculation", None) == "when_supported"
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: StorageConfig, tuning: TransferTuning) -> Self:
        """Build the client from ``config.aws_s3``. Raises ValueError when that table is missing."""
        options = config.aws_s3
        if options is None:
            raise ValueError(f"storage {config.name!r}: storage_type 's3' needs an aws_s3 table")
        secrets = [s.get_secret_value() for s in (options.s3_api_key, options.s3_secret) if s]
        client = make_client(options, tuning)
        return cls(
            config.name, client, bucket=config.bucket, prefix=config.path, tuning=tuning,
            endpoint=options.s3_custom_endpoint_url, secrets=secrets,
        )  # fmt: skip

    def full_key(self, key: str) -> str:
        """``prefix + key``. Raises ValueError for an illegal or over-long key."""
        full = self.prefix + check_key(key)
        if len(full.encode()) > MAX_KEY_BYTES:
            raise ValueError(f"S3 keys are at most {MAX_KEY_BYTES} bytes: {full[:60]!r}...")
        return full

    def raise_mapped(self, exc: Exception, action: str, key: str, *, missing: bool = False) -> NoReturn:
        """Raise the `worker.errors` exception for a botocore error (`missing`: 404 means no key)."""
        where = f"s3 storage {self.name!r}: {action} s3://{self.bucket}/{self.prefix}{key}"
        if isinstance(exc, boto.ClientError):
            error, meta = exc.response.get("Error", {}), exc.response.get("ResponseMetadata", {})
            code, status = str(error.get("Code", "Unknown")), int(meta.get("HTTPStatusCode", 0))
            text = self._scrub(f"{where} failed: {code} (HTTP {status}): {error.get('Message', '')}")
            if missing and (code in _MISSING_CODES or (status == 404 and code != "NoSuchBucket")):
                raise FileNotFoundError(text) from exc
            transient = code in _UNAVAILABLE_CODES or status >= 500 or status == 429
            raise (StorageUnavailable if transient else StorageRefused)(text) from exc
        if isinstance(exc, _UNAVAILABLE_ERRORS + _REFUSED_ERRORS):
            kind = StorageRefused if isinstance(exc, _REFUSED_ERRORS) else StorageUnavailable
            raise kind(self._scrub(f"{where} failed: {type(exc).__name__}: {exc}")) from exc
        raise exc

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        """Run `fn` on the part-upload pool (created on first use)."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.tuning.parts_in_flight, thread_name_prefix="s3-part")
            return self._pool.submit(fn, *args)

    def checksum_args(self) -> dict[str, Any]:
        """What s3transfer sends: a CRC32 per part when botocore computes checksums by default."""
        return {"ChecksumAlgorithm": "CRC32"} if self._checksum else {}

    def open_writer(
        self, key: str, *, content_type: str, metadata: Mapping[str, str], size_hint: int | None = None
    ) -> ObjectWriter:
        """Nothing is sent until the first part is full or commit. Raises ValueError for an illegal
        key or metadata key; `size_hint` is not needed."""
        return S3Writer(self, key, self.full_key(key), content_type, encode_metadata(metadata))

    def stat(self, key: str) -> StoredObject:
        """HEAD the object. Raises FileNotFoundError, ValueError, StorageRefused / StorageUnavailable."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.full_key(key))
        except (boto.ClientError, boto.BotoCoreError) as exc:
            self.raise_mapped(exc, "stat", key, missing=True)
        metadata = {name: unquote(value) for name, value in head.get("Metadata", {}).items()}
        checksums = {"sha256": metadata["sha256"]} if "sha256" in metadata else {}
        etag = head.get("ETag", "").strip('"') or None
        return StoredObject(key, head["ContentLength"], metadata, head.get("ContentType"), etag, checksums)

    def read(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """GET the object, streamed. Raises FileNotFoundError at once when there is none;
        StorageRefused / StorageUnavailable (also while iterating)."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.full_key(key))["Body"]
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
            self.client.delete_object(Bucket=self.bucket, Key=self.full_key(key))
        except (boto.ClientError, boto.BotoCoreError) as exc:
            self.raise_mapped(exc, "delete", key)

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}"
        return f"{where} at {self.endpoint}" if self.endpoint else where

    def close(self) -> None:
        """Stop the part-upload threads and the client's connections. Idempotent."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self.client.close()
