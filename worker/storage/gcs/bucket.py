"""GCSBucket: what a GCS storage and its writers share.

The client and its authorized requests session (the raw upload and download requests go through it),
the bucket and prefix, timeouts and the library's retry, the size of a resumable upload's chunks, how
a failure reads (`worker.storage.gcs.errors`), what every upload carries (``gcs_kms_key_name``; on a
protected write the retention and holds: `protected_fields`), and the clean-ups a writer needs:
deleting one generation of an object, cancelling a resumable session.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, urlencode

import requests
import structlog
from google.cloud.storage.retry import DEFAULT_RETRY

from config import TransferTuning
from worker.storage.base import Protection, Retention
from worker.storage.errors import Failure, Scrubber, sdk_retry_deadline
from worker.storage.gcs.errors import ERRORS, Missing, build, mapped, response_text

QUANTUM = 256 * 1024  # GCS: every chunk but the last is a multiple of 256 KiB
_GONE = frozenset({200, 204, 404, 410, 499})  # a cancelled (499) or already finished session

log = structlog.get_logger(__name__)


def chunk_size(part_size: int) -> int:
    """`part_size` rounded down to a multiple of 256 KiB (at least 256 KiB)."""
    return max(QUANTUM, part_size // QUANTUM * QUANTUM)


def rfc3339(moment: datetime) -> str:
    """`moment` as GCS writes times: UTC, ``Z``."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def protected_fields(retention: Retention | None, now: datetime | None = None) -> dict[str, Any]:
    """What a protected upload's object resource carries for `retention`, written `now`: ``retention``
    (mode, retainUntilTime), ``temporaryHold``, ``eventBasedHold``."""
    if retention is None:
        return {}
    fields: dict[str, Any] = {}
    until = retention.until(now or datetime.now(UTC))
    if until is not None:
        fields["retention"] = {"mode": retention.mode, "retainUntilTime": rfc3339(until)}
    if "temporary" in retention.holds:
        fields["temporaryHold"] = True
    if "event_based" in retention.holds:
        fields["eventBasedHold"] = True
    return fields


def protection_of(resource: Mapping[str, Any]) -> Protection:
    """A `Protection` from an object resource (JSON API names): ``retention`` (mode, retainUntilTime), a
    bucket retention policy's ``retentionExpirationTime``, ``temporaryHold``, ``eventBasedHold``,
    ``generation``."""
    retention = resource.get("retention") or {}
    until = retention.get("retainUntilTime") or resource.get("retentionExpirationTime")
    mode = retention.get("mode") or ("bucket policy" if resource.get("retentionExpirationTime") else None)
    holds = tuple(name for name, field in (("temporary", "temporaryHold"), ("event_based", "eventBasedHold"))
                  if resource.get(field))
    return Protection(datetime.fromisoformat(until) if until else None, mode, holds,
                      str(resource.get("generation") or "") or None)


def transport(client: Any) -> requests.Session:
    """The client's authorized requests session (google-cloud-core's ``_http``): the raw upload and
    download requests share its credentials, token refresh and connection pool."""
    session = client._http
    if not isinstance(session, requests.Session):
        raise TypeError(f"expected a requests.Session from the GCS client, got {type(session).__name__}")
    return session


class GCSBucket:
    """One bucket and prefix as storage `storage` writes them (see the module docstring)."""

    def __init__(
        self, storage: str, client: Any, name: str, prefix: str, tuning: TransferTuning, *, scrub: Scrubber
    ) -> None:
        """`client` is a `google.cloud.storage.Client`."""
        self.storage, self.client, self.name, self.prefix, self.tuning = storage, client, name, prefix, tuning
        self.session = transport(client)
        self.endpoint = str(client.api_endpoint).rstrip("/")
        self.chunk_size = chunk_size(int(tuning.part_size))
        self.timeout = (tuning.connect_timeout.total_seconds(), tuning.read_timeout.total_seconds())
        self.retry = DEFAULT_RETRY.with_timeout(sdk_retry_deadline(tuning))
        self.blobs = client.bucket(name)  # the library's bucket, for stat and delete
        self.scrub = scrub
        self.retention: Retention | None = None  # the storage's (`GCSStorage`); a protected write carries it
        self.kms_key_name: str | None = None  # gcs_kms_key_name: every upload is encrypted with it

    def where(self, action: str, key: str) -> str:
        return f"gcs storage {self.storage!r}: {action} gs://{self.name}/{self.prefix}{key}"

    def error(self, exc: BaseException, action: str, key: str, missing: Missing = "key") -> Failure:
        """The `worker.errors` exception for `exc`; re-raises `exc` itself when it is not a storage failure."""
        found = mapped(exc, self.where(action, key), missing, self.scrub)
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
        raise build(self.where(action, key), response.status_code, text, missing, self.scrub)

    def start_upload(
        self, kind: Literal["multipart", "resumable"], action: str, key: str, *, create_only: bool, **kwargs: Any
    ) -> requests.Response:
        """POST a new upload of `kind` (a write into a missing bucket: StorageRefused "missing_bucket");
        `create_only`: with ``ifGenerationMatch=0``, which GCS checks when the object is made (KeyTaken)."""
        query = {"uploadType": kind, **({"ifGenerationMatch": "0"} if create_only else {}),
                 **({"kmsKeyName": self.kms_key_name} if self.kms_key_name else {})}
        url = f"{self.endpoint}/upload/storage/v1/b/{quote(self.name, safe='')}/o?{urlencode(query, safe='')}"
        return self.call("POST", url, action, key, ok=(200, 201), missing="bucket", **kwargs)

    def object_url(self, name: str) -> str:
        """The JSON API URL of object `name`'s resource."""
        return f"{self.endpoint}/storage/v1/b/{quote(self.name, safe='')}/o/{quote(name, safe='')}"

    def delete(self, key: str, name: str, generation: int | None = None) -> None:
        """Delete object `name` (`key` under the prefix), only in `generation` when given; missing is
        fine. Raises StorageRefused / StorageUnavailable."""
        try:
            self.blobs.blob(name).delete(if_generation_match=generation, timeout=self.timeout, retry=self.retry)
        except ERRORS as exc:
            error = self.error(exc, "delete", key)
            if not isinstance(error, FileNotFoundError):
                raise error from exc

    def discard(self, key: str, name: str, generation: str | None) -> bool:
        """Delete the object a failed verification left, only in the generation just written.
        Returns False (logged) when that failed; never raises."""
        try:
            self.delete(key, name, int(generation) if generation else None)
        except Exception as exc:  # reported by the caller's VerificationFailed, and logged
            log.warning("storage_discard_failed", storage=self.storage, key=key, reason=str(exc))
            return False
        return True

    def cancel(self, session: str, key: str) -> None:
        """Cancel a resumable upload session (DELETE on its URI). Never raises: a failure is logged."""
        try:
            response = self.session.request("DELETE", session, timeout=self.timeout)
        except ERRORS as exc:
            log.warning("storage_abort_failed", storage=self.storage, key=key,
                        reason=str(self.error(exc, "cancel", key)))  # fmt: skip
            return
        if response.status_code not in _GONE:
            reason = f"HTTP {response.status_code}: {response_text(response)}"
            log.warning("storage_abort_failed", storage=self.storage, key=key, reason=reason)
