"""GCSStorage: Google Cloud Storage (``storage_type = "gcs"``), through google-cloud-storage.

Objects live at ``gs://<bucket>/<prefix><key>``. Credentials, project and endpoint are chosen in
`worker.storage.gcs.auth`; errors are mapped in `worker.storage.gcs.errors`.

Writing streams (`worker.storage.gcs.writer`). An object no larger than ``multipart_threshold`` goes
up at commit as ONE multipart request whose object resource carries the metadata with ``sha256``,
the content type and the ``crc32c`` (and ``md5Hash``) from the digests: GCS checks the bytes against
them and refuses a mismatch (VerificationFailed). A larger object opens a resumable upload session
once past the threshold and sends chunks of ``part_size`` (rounded down to a multiple of 256 KiB,
GCS's rule) one at a time, each on a thread of the writer's own while the next one fills; the final
chunk goes at commit with ``x-goog-hash: crc32c=...``, so that GCS checks the whole object.
**A resumable upload carries no sha256**: its metadata is fixed when the
session opens, before the bytes exist, and changing it afterwards would be a second, non-atomic
write. Its checksum is GCS's native full-object CRC32C, which `stat` reports.

Commit then verifies in both cases: the size and CRC32C that GCS reports for the new object must
equal the digests' (and the bytes sent); on a mismatch the object is deleted (that generation only)
and VerificationFailed raised. Nothing is visible before commit; ``abort`` cancels the session
(DELETE on its URI), so nothing is left. Overwriting is the contract, so no create-only
precondition (``if_generation_match=0``) is used.

Memory per writer: at most ``max(multipart_threshold, part_size)`` buffered plus one incoming chunk
while writing; a chunk being sent is one more ``part_size``; a one-request commit holds the buffered
bytes twice for a moment (≈ 2 × ``multipart_threshold``).

Differences from S3: metadata values are kept exactly (the JSON API takes any UTF-8); ``etag`` is the
object's generation; keys are at most 1024 UTF-8 bytes, without CR or LF (GCS's rules: ValueError);
a stat or read in a missing bucket is FileNotFoundError unless GCS names the bucket in its 404 (the
emulator does not), and a write there is refused. Retries: the library's, for stat and delete,
stop after 2 × ``connect_timeout``; upload and download requests are not retried here (the transfer
is retried from the ledger).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, Self
from urllib.parse import quote, urlsplit, urlunsplit

import requests
import structlog
from google.cloud.storage.retry import DEFAULT_RETRY

from config import StorageConfig, TransferTuning
from worker.errors import KeyRefused
from worker.storage.base import Capabilities, ObjectWriter, Storage, StoredObject
from worker.storage.gcs.auth import DEFAULT_ENDPOINT, login, make_client
from worker.storage.gcs.errors import ERRORS, Mapped, Missing, build, mapped, response_text
from worker.storage.gcs.writer import GCSWriter, chunk_size, stored_object
from worker.storage.keys import check_key, check_prefix

MAX_NAME_BYTES = 1024
_GONE = frozenset({200, 204, 404, 410, 499})  # a cancelled (499) or already finished session

log = structlog.get_logger(__name__)


def public_endpoint(url: str) -> str:
    """`url` without user info, query string or fragment, for logs."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment=""))


def transport(client: Any) -> requests.Session:
    """The client's authorized requests session (google-cloud-core's ``_http``): the raw upload and
    download requests share its credentials, token refresh and connection pool."""
    session = client._http
    if not isinstance(session, requests.Session):
        raise TypeError(f"expected a requests.Session from the GCS client, got {type(session).__name__}")
    return session


class GCSStorage(Storage):
    """Objects in one bucket, under one prefix."""

    storage_type = "gcs"
    capabilities = Capabilities(multipart=True, native_checksum="crc32c",
                                content_checksums=frozenset({"sha256"}))  # metadata belongs to one generation

    def __init__(
        self,
        name: str,
        client: Any,
        *,
        bucket: str,
        prefix: str = "",
        tuning: TransferTuning,
        secrets: Sequence[str] = (),
    ) -> None:
        """`client` is a `google.cloud.storage.Client`; `secrets` are scrubbed from every error
        message. Raises ValueError for a bad prefix."""
        super().__init__(name)
        self.client, self.bucket, self.prefix, self.tuning = client, bucket, check_prefix(prefix), tuning
        self.session = transport(client)
        self.endpoint = str(client.api_endpoint).rstrip("/")
        self.chunk_size = chunk_size(int(tuning.part_size))
        self.timeout = (tuning.connect_timeout.total_seconds(), tuning.read_timeout.total_seconds())
        self.retry = DEFAULT_RETRY.with_timeout(2 * tuning.connect_timeout.total_seconds())
        self._bucket = client.bucket(bucket)
        self._secrets = tuple(s for s in secrets if s)

    @classmethod
    def from_config(cls, config: StorageConfig, tuning: TransferTuning) -> Self:
        """Credentials from ``gcs_credentials`` / ``gcs_credentials_file`` / the environment (see
        `worker.storage.gcs.auth`). Raises StorageRefused (reason "credentials") when they cannot be
        loaded; nothing is sent to GCS yet."""
        credentials = login(config)
        client = make_client(config, credentials)
        return cls(
            config.name, client, bucket=config.bucket, prefix=config.path, tuning=tuning, secrets=credentials.secrets
        )

    def full_key(self, key: str) -> str:
        """``prefix + key``. Raises KeyRefused (a ValueError) for an illegal key or a name GCS refuses."""
        full = self.prefix + check_key(key)
        if "\r" in full or "\n" in full:
            raise KeyRefused(f"GCS object names cannot contain CR or LF: {key!r}")
        if len(full.encode()) > MAX_NAME_BYTES:
            raise KeyRefused(f"GCS object names are at most {MAX_NAME_BYTES} bytes: {full[:60]!r}...")
        return full

    def where(self, action: str, key: str) -> str:
        return f"gcs storage {self.name!r}: {action} gs://{self.bucket}/{self.prefix}{key}"

    def error(self, exc: BaseException, action: str, key: str, missing: Missing = "key") -> Mapped:
        """The `worker.errors` exception for `exc`; re-raises `exc` itself when it is not a storage failure."""
        found = mapped(exc, self.where(action, key), missing, self._secrets)
        if found is None:
            raise exc
        return found

    def call(
        self, method: str, url: str, action: str, key: str, *, ok: tuple[int, ...], missing: Missing, **kwargs: Any
    ) -> requests.Response:
        """One raw request through the authorized session. Raises the mapped error for a status
        not in `ok` or for a failure to get an answer."""
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except ERRORS as exc:
            raise self.error(exc, action, key, missing) from exc
        if response.status_code in ok:
            return response
        text = response_text(response)
        response.close()
        raise build(self.where(action, key), response.status_code, text, missing, self._secrets)

    def upload_url(self, kind: Literal["multipart", "resumable"]) -> str:
        return f"{self.endpoint}/upload/storage/v1/b/{quote(self.bucket, safe='')}/o?uploadType={kind}"

    def open_writer(
        self, key: str, *, content_type: str, metadata: Mapping[str, str], size_hint: int | None = None
    ) -> ObjectWriter:
        """Nothing is sent until the threshold is passed or commit. Raises ValueError for an
        illegal key; `size_hint` is not needed."""
        return GCSWriter(self, key, self.full_key(key), content_type, metadata)

    def stat(self, key: str) -> StoredObject:
        """The object's resource. Raises FileNotFoundError, ValueError, StorageRefused / StorageUnavailable."""
        blob = self._bucket.blob(self.full_key(key))
        try:
            blob.reload(timeout=self.timeout, retry=self.retry)
        except ERRORS as exc:
            raise self.error(exc, "stat", key) from exc
        resource = {
            "size": blob.size,
            "metadata": blob.metadata,
            "contentType": blob.content_type,
            "generation": blob.generation,
            "crc32c": blob.crc32c,
            "md5Hash": blob.md5_hash,
        }
        return stored_object(key, resource)

    def read(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """GET the object's media, streamed. Raises FileNotFoundError at once when there is none;
        ValueError; StorageRefused / StorageUnavailable (also while iterating)."""
        name = quote(self.full_key(key), safe="")
        url = f"{self.endpoint}/download/storage/v1/b/{quote(self.bucket, safe='')}/o/{name}?alt=media"
        response = self.call("GET", url, "read", key, ok=(200,), missing="key", stream=True)
        return self._chunks(response, key, chunk_size)

    def _chunks(self, response: requests.Response, key: str, chunk_size: int) -> Iterator[bytes]:
        try:
            yield from response.iter_content(chunk_size)
        except ERRORS as exc:
            raise self.error(exc, "read", key) from exc
        finally:
            response.close()

    def delete(self, key: str) -> None:
        """Remove the object; missing is fine. Raises ValueError, StorageRefused / StorageUnavailable."""
        self._delete(key, self.full_key(key), None)

    def _delete(self, key: str, name: str, generation: int | None) -> None:
        try:
            self._bucket.blob(name).delete(if_generation_match=generation, timeout=self.timeout, retry=self.retry)
        except ERRORS as exc:
            error = self.error(exc, "delete", key)
            if not isinstance(error, FileNotFoundError):
                raise error from exc

    def discard(self, key: str, generation: str | None) -> bool:
        """Delete the object a failed verification left, only in the generation just written.
        Returns False (logged) when that failed; never raises."""
        try:
            self._delete(key, self.full_key(key), int(generation) if generation else None)
        except Exception as exc:  # reported by the caller's VerificationFailed, and logged
            log.warning("storage_discard_failed", storage=self.name, key=key, reason=str(exc))
            return False
        return True

    def cancel(self, session: str, key: str) -> None:
        """Cancel a resumable upload session (DELETE on its URI). Never raises: a failure is logged."""
        try:
            response = self.session.request("DELETE", session, timeout=self.timeout)
        except ERRORS as exc:
            log.warning("storage_abort_failed", storage=self.name, key=key, reason=str(self.error(exc, "cancel", key)))
            return
        if response.status_code not in _GONE:
            reason = f"HTTP {response.status_code}: {response_text(response)}"
            log.warning("storage_abort_failed", storage=self.name, key=key, reason=reason)

    def describe(self) -> str:
        where = f"gs://{self.bucket}/{self.prefix}"
        return where if self.endpoint == DEFAULT_ENDPOINT else f"{where} at {public_endpoint(self.endpoint)}"

    def close(self) -> None:
        """Close the client's connections. Idempotent."""
        self.client.close()
