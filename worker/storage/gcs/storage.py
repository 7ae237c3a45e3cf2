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
(DELETE on its URI), so nothing is left.

Never overwrite (`worker.storage.create_only`): with ``create_only = "condition"`` both uploads carry
``ifGenerationMatch=0`` (the resumable one on the request that opens the session; GCS checks it
when the object is made) and GCS answers 412 (KeyTaken) when the name holds an object; with
``"head"`` a stat comes right before the one request, or the final chunk, instead. Before a
resumable session opens, a stat checks the name in both modes (no chunk goes up for a taken one).

Write-once (``gcs_retention_days`` + ``gcs_retention_mode``, ``gcs_temporary_hold``,
``gcs_event_based_hold``): a protected upload's object resource carries ``retention`` (mode,
retainUntilTime = now + the days), ``temporaryHold`` and ``eventBasedHold``, on the one request or on
the request that opens the resumable session, so the object is protected from the moment it exists.
Object retention needs a bucket with it enabled (`write_once_problem` reads the bucket's
``objectRetention``); holds need nothing. GCS refuses to delete or overwrite a retained or held
object (403: ObjectLocked). `protection` reads the object's resource back. ``gcs_kms_key_name``
(CMEK) goes on every upload as ``kmsKeyName``, probes included.

Memory per writer: at most ``max(multipart_threshold, part_size)`` buffered plus one incoming chunk
while writing; a chunk being sent is one more ``part_size``; a one-request commit holds the buffered
bytes twice for a moment (≈ 2 × ``multipart_threshold``).

Resume (`resume_writer`, issue 18): a writer's `durable` state is its resumable session URI (a credential:
kept in the ledger, never logged; error messages show it as ``?***``), the pieces the session acknowledged
(each 308's advance, with its CRC32C, computed once per chunk) and a digest of what opening the session fixed
(`GCSWriter.settings`: metadata, content type, retention and holds, KMS key, ``ifGenerationMatch=0``). A later
attempt, in any process, asks the session its status (``PUT`` with ``Content-Range: bytes */*``): gone (404,
410, 499: cancelled, expired after a week, or finished) or holding fewer bytes than the state's offset, or
other settings, and `resume_writer` returns None. Otherwise the writer goes on at the state's offset; GCS
cannot rewind a session, so when it holds more (a chunk acknowledged after the state was saved) the writer
drops those bytes as they are written again (they were sent already) and sends from where the session
stands. GCS keeps no checksum per chunk: it cannot tell a state's piece CRC32C or sizes from others of the
same total (the transfer layer checks them against the source); the final chunk's ``x-goog-hash`` and the
commit's check of the whole object's CRC32C cover every byte, the dropped ones included. The session's
``ifGenerationMatch=0``, retention and holds apply when it makes the object, as for a fresh one.

Links (`link`): a V4 signed URL, signed with the service-account key or through IAM signBlob
(`worker.storage.gcs.signing`); ``capabilities.links`` says whether these credentials can sign.

Holds and erasure (every generation; the legal hold is GCS's temporary hold): `worker.storage.gcs.versions`.

Differences from S3: metadata values are kept exactly (the JSON API takes any UTF-8); ``etag`` is the
object's generation; keys are at most 1024 UTF-8 bytes, without CR or LF (GCS's rules: ValueError);
a stat or read in a missing bucket is FileNotFoundError unless GCS names the bucket in its 404 (the
emulator does not), and a write there is refused. Retries: the library's, for stat and delete,
stop after 2 × ``connect_timeout``; upload and download requests are not retried here (the transfer
is retried from the ledger).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any, Self
from urllib.parse import quote

import requests

from config import StorageConfig, TransferTuning
from worker.errors import KeyRefused
from worker.storage.base import (
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
from worker.storage.gcs import versions
from worker.storage.gcs.auth import DEFAULT_ENDPOINT, login, make_client
from worker.storage.gcs.bucket import GCSBucket, protection_of
from worker.storage.gcs.errors import ERRORS
from worker.storage.gcs.signing import credentials_of, signed_url, signing_mode
from worker.storage.gcs.writer import GCSWriter, persisted, stored_object
from worker.storage.keys import check_key, check_prefix

MAX_NAME_BYTES = 1024


class GCSStorage(Storage):
    """Objects in one bucket, under one prefix."""

    storage_type = "gcs"
    capabilities = Capabilities(multipart=True, native_checksum="crc32c", legal_hold=True,
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
        self.prefix, self.tuning = check_prefix(prefix), tuning
        self.bucket = GCSBucket(name, client, bucket, self.prefix, tuning, scrub=Scrubber(secrets, queries=True))
        self.signing = signing_mode(credentials_of(self.bucket))  # per instance: what these credentials can sign
        self.capabilities = Capabilities(multipart=True, native_checksum="crc32c",
                                         content_checksums=frozenset({"sha256"}), links=self.signing is not None,
                                         legal_hold=True)

    @classmethod
    def from_config(cls, config: StorageConfig, tuning: TransferTuning) -> Self:
        """Credentials from ``gcs_credentials`` / ``gcs_credentials_file`` / the environment (see
        `worker.storage.gcs.auth`). Raises StorageRefused (reason "credentials") when they cannot be
        loaded; nothing is sent to GCS yet."""
        credentials = login(config)
        client = make_client(config, credentials)
        storage = cls(
            config.name, client, bucket=config.bucket, prefix=config.path, tuning=tuning, secrets=credentials.secrets
        )
        storage.protect_with(Retention.of(config), kms_key_name=config.gcs_kms_key_name)
        return storage

    def protect_with(self, retention: Retention | None, *, kms_key_name: str | None = None) -> None:
        """Every protected write from now on carries `retention`, and every write the CMEK `kms_key_name`."""
        self.retention = self.bucket.retention = retention
        self.bucket.kms_key_name = kms_key_name

    @property
    def session(self) -> requests.Session:
        """The authorized requests session every raw request goes through."""
        return self.bucket.session

    def full_key(self, key: str) -> str:
        """``prefix + key``. Raises KeyRefused (a ValueError) for an illegal key or a name GCS refuses."""
        full = self.prefix + check_key(key)
        if "\r" in full or "\n" in full:
            raise KeyRefused(f"GCS object names cannot contain CR or LF: {key!r}")
        if len(full.encode()) > MAX_NAME_BYTES:
            raise KeyRefused(f"GCS object names are at most {MAX_NAME_BYTES} bytes: {full[:60]!r}...")
        return full

    def open_writer(
        self, key: str, *, content_type: str, metadata: Mapping[str, str], size_hint: int | None = None,
        overwrite: bool = False, protect: bool = True,
    ) -> ObjectWriter:
        """Nothing is sent until the threshold is passed or commit. Raises ValueError for an
        illegal key; `size_hint` is not needed. Create-only unless `overwrite`; retention and holds
        unless not `protect`."""
        return GCSWriter(self.bucket, key, self.full_key(key), content_type, metadata,
                         guard(self, key, overwrite=overwrite), protect=protect)

    def resume_writer(
        self, key: str, state: UploadState, *, content_type: str, metadata: Mapping[str, str],
        size_hint: int | None = None, overwrite: bool = False, protect: bool = True,
    ) -> ObjectWriter | None:
        """The resumable session of `state`, after a status query (see "Resume" above); None when it is gone
        or holds less. Raises ValueError for an illegal key, StorageRefused / StorageUnavailable when GCS
        cannot be asked."""
        writer = GCSWriter(self.bucket, key, self.full_key(key), content_type, metadata,
                           guard(self, key, overwrite=overwrite), protect=protect)
        session = state.handle.get("session")
        if not state.pieces or not isinstance(session, str) or not session.startswith(self.bucket.endpoint + "/"):
            return None
        response = self.bucket.call("PUT", session, "ask the upload session of", key,
                                    ok=(200, 201, 308, 404, 410, 499), missing="session",
                                    headers={"Content-Range": "bytes */*"})
        response.close()
        if response.status_code != 308:
            return None  # gone, or finished: an object was made (a fresh writer finds the key taken)
        return writer if writer.take_over(state, session, persisted(response)) else None

    def stat(self, key: str) -> StoredObject:
        """The object's resource. Raises FileNotFoundError, ValueError, StorageRefused / StorageUnavailable."""
        blob = self.bucket.blobs.blob(self.full_key(key))
        try:
            blob.reload(timeout=self.bucket.timeout, retry=self.bucket.retry)
        except ERRORS as exc:
            raise self.bucket.error(exc, "stat", key) from exc
        resource = {
            "size": blob.size,
            "metadata": blob.metadata,
            "contentType": blob.content_type,
            "generation": blob.generation,
            "crc32c": blob.crc32c,
            "md5Hash": blob.md5_hash,
        }
        return stored_object(key, resource)

    def protection(self, key: str) -> Protection:
        """The object's ``retention``, ``temporaryHold`` and ``eventBasedHold`` (and a bucket retention
        policy's ``retentionExpirationTime``), from its resource. Raises FileNotFoundError, ValueError,
        StorageRefused / StorageUnavailable."""
        url = self.bucket.object_url(self.full_key(key))
        response = self.bucket.call("GET", url, "read the retention of", key, ok=(200,), missing="key")
        return protection_of(response.json())

    def write_once_problem(self) -> str | None:
        """With a retention period asked: the bucket's ``objectRetention`` must be enabled (holds need
        nothing). Raises StorageRefused / StorageUnavailable."""
        if self.retention is None or not self.retention.days:
            return None
        url = f"{self.bucket.endpoint}/storage/v1/b/{quote(self.bucket.name, safe='')}"
        resource = self.bucket.call("GET", url, "read the settings of", "", ok=(200,), missing="bucket").json()
        if (resource.get("objectRetention") or {}).get("mode") == "Enabled":
            return None
        return (f"bucket {self.bucket.name} does not have object retention enabled (GCS sets an object's "
                "retention only in a bucket created with it: --enable-per-object-retention)")

    def delete_version(self, key: str, version: str) -> None:
        """Delete generation `version` of the object. Raises ObjectLocked (retained or held), ValueError,
        StorageRefused / StorageUnavailable."""
        self.bucket.delete(key, self.full_key(key), int(version))

    def release_holds(self, key: str, version: str | None = None) -> None:
        """Clear the temporary and event-based holds (PATCH the resource; of generation `version` when
        given). Raises FileNotFoundError, ValueError, StorageRefused / StorageUnavailable."""
        url = self.bucket.object_url(self.full_key(key)) + (f"?generation={int(version)}" if version else "")
        self.bucket.call("PATCH", url, "release the holds of", key, ok=(200,), missing="key",
                         json={"temporaryHold": False, "eventBasedHold": False})

    def read(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """GET the object's media, streamed. Raises FileNotFoundError at once when there is none;
        ValueError; StorageRefused / StorageUnavailable (also while iterating)."""
        name = quote(self.full_key(key), safe="")
        url = f"{self.bucket.endpoint}/download/storage/v1/b/{quote(self.bucket.name, safe='')}/o/{name}?alt=media"
        response = self.bucket.call("GET", url, "read", key, ok=(200,), missing="key", stream=True)
        return self._chunks(response, key, chunk_size)

    def _chunks(self, response: requests.Response, key: str, chunk_size: int) -> Iterator[bytes]:
        try:
            yield from response.iter_content(chunk_size)
        except ERRORS as exc:
            raise self.bucket.error(exc, "read", key) from exc
        finally:
            response.close()

    def delete(self, key: str) -> None:
        """Remove the object; missing is fine. Raises ValueError, StorageRefused / StorageUnavailable."""
        self.bucket.delete(key, self.full_key(key))

    def versions(self, key: str) -> list[ObjectVersion]:
        """Every generation of `key`, with its holds and retention: `worker.storage.gcs.versions`.
        Raises ValueError, StorageRefused / StorageUnavailable."""
        return versions.list_versions(self, key)

    def erase(self, key: str) -> list[ObjectVersion]:
        """Delete every generation of `key`. Raises ErasureRefused, ValueError, StorageRefused /
        StorageUnavailable."""
        return versions.erase(self, key)

    def set_legal_hold(self, key: str, on: bool) -> list[ObjectVersion]:
        """GCS's temporary hold on every generation of `key`, read back. Raises FileNotFoundError,
        StorageRefused (also when the store does not keep it), StorageUnavailable."""
        return versions.set_legal_hold(self, key, on)

    def link(self, key: str, ttl: timedelta) -> str:
        """A V4 signed GET URL valid for `ttl` (whole seconds, rounded up): see
        `worker.storage.gcs.signing`. Raises LinkUnavailable (these credentials cannot sign; past 7
        days), ValueError, StorageRefused / StorageUnavailable."""
        return signed_url(self.bucket, key, self.full_key(key), ttl, self.signing)

    def describe(self) -> str:
        where = f"gs://{self.bucket.name}/{self.prefix}"
        endpoint = self.bucket.endpoint
        return where if endpoint == DEFAULT_ENDPOINT else f"{where} at {public_url(endpoint)}"

    def close(self) -> None:
        """Close the client's connections. Idempotent."""
        self.bucket.client.close()
