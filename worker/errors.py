"""The archiver's one error tree.

Every failure the domain raises is one of these; lower-layer errors (httpx, botocore, OS) are
mapped at the edge that calls them, with ``raise ... from exc``::

    ArchiverError
    ├── InvalidWebhook            refused at intake: nothing is recorded
    │   ├── BadCredentials            wrong X-Api-Key or X-Signature (HTTP 401)
    │   ├── PayloadTooLarge           body over the limit, compressed or not (HTTP 413)
    │   └── MalformedPayload          not JSON, or a required field missing (HTTP 400)
    ├── TransientError            retried with backoff (kept in the ledger) until the file's deadline
    │   ├── SourceUnavailable         transport error, 5xx or 429 from the download host
    │   ├── SourceMissing             404: the file is gone; `lost` after the deadline
    │   │   └── UrlRefused                401/403/410: the signed URL expired; a fresh one is fetched
    │   ├── IncompleteDownload        the body ended before (or went past) Content-Length
    │   ├── StorageUnavailable        storage 5xx, throttling, connection reset, timeout (.reason)
    │   ├── StreamUnavailable         Stream's API: transport error or 5xx (a 429 is waited out)
    │   ├── StorageUnknown            this worker's configuration has no such storage (yet: a rolling deploy)
    │   └── VerificationFailed        the stored object does not match what was sent
    ├── PermanentError            recorded as `failed` with its reason until retried by command
    │   ├── DownloadRefused           URL outside `download_hosts` or not http(s)
    │   ├── StorageRefused            credentials refused, bucket missing, no permission (.reason)
    │   │   ├── KeyRefused                a key this storage cannot store (also a ValueError)
    │   │   ├── KeyTaken                  a create-only write found another object at the key
    │   │   └── ObjectLocked              the store's retention or hold forbids deleting or replacing the object
    │   │       └── ErasureRefused        the store refused to erase an object: a retention period or a legal hold
    │   └── StreamRefused             Stream's API refused the request (4xx: credentials, not found…: .gone)
    ├── CopyRefused               the store cannot fetch the source itself: stream it instead
    ├── LinkUnavailable           no download link for this object: the storage cannot sign one (and what it
    │                             would need), local disk without `public_url`, or the transfer is not archived
    ├── LeaseLost                 another worker holds the transfer now: stop without writing
    ├── LedgerSchemaError         the ledger's schema version is newer than (or unknown to) this archiver
    └── AuditLogError             an audit-log export cannot be written, or its entries in Redis are not as expected

Configuration errors are `config.ConfigError` (the config package sits below this one).
"""

from __future__ import annotations

from typing import Literal


class ArchiverError(Exception):
    """Base of every error the archiver raises on purpose."""


class InvalidWebhook(ArchiverError):
    """A webhook delivery that must be refused; ``status`` is the HTTP answer."""

    status = 400


class BadCredentials(InvalidWebhook):
    status = 401


class PayloadTooLarge(InvalidWebhook):
    status = 413


class MalformedPayload(InvalidWebhook):
    status = 400


class TransientError(ArchiverError):
    """Worth retrying later: the same attempt may well succeed."""


class SourceUnavailable(TransientError):
    pass


class SourceMissing(TransientError):
    """The source answered that the file is not there (or the URL no longer grants it)."""


class UrlRefused(SourceMissing):
    """The host refused the signed URL (401/403/410: expired, or no longer granted); a fresh URL
    from Stream's listing may work. A 404 stays a plain SourceMissing: the key is gone."""


class IncompleteDownload(TransientError):
    pass


# Why a storage refused or failed, for `archiver storage check` and operators. Backends set it when
# they map their SDK's error; "other" when nothing more precise is known.
StorageReason = Literal[
    "unreachable", "credentials", "missing_bucket", "permission", "checksum_rejected", "throttled",
    "server_error", "disk_full", "key_refused", "key_taken", "object_locked", "retention_unsupported",
    "retention", "legal_hold", "other",
]


class StorageUnavailable(TransientError):
    """Transient: reasons unreachable, throttled, server_error, checksum_rejected (bytes damaged on the
    way), disk_full, other."""

    def __init__(self, message: str, *, reason: StorageReason = "other") -> None:
        super().__init__(message)
        self.reason: StorageReason = reason


class VerificationFailed(TransientError):
    pass


class StorageUnknown(TransientError):
    """The transfer's storage is not in this worker's configuration: during a rolling deploy a worker
    still on the old configuration meets a storage only the new one has. Another worker (or this
    one, restarted) knows it; a storage that is known but cannot be built is a StorageRefused."""


class PermanentError(ArchiverError):
    """Retrying will not help until an operator changes something."""


class DownloadRefused(PermanentError):
    pass


class StorageRefused(PermanentError):
    """Permanent: reasons credentials, missing_bucket, permission, checksum_rejected, retention_unsupported
    (the bucket cannot keep the retention or holds the storage's settings ask for), other."""

    def __init__(self, message: str, *, reason: StorageReason = "other") -> None:
        super().__init__(message)
        self.reason: StorageReason = reason


class KeyRefused(StorageRefused, ValueError):
    """Permanent, reason ``key_refused``: a key this storage cannot store as it is (a path segment
    Azure refuses, a name over the store's length limit, a character it cannot hold). Also a
    ValueError: a key that is not a storage key at all (``../x``) is refused the same way."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="key_refused")


class KeyTaken(StorageRefused):
    """Permanent, reason ``key_taken``: a create-only write (the default: never over other bytes) found
    an object already at its key, and nothing was written. The transfer then compares that object
    with the bytes it fetched: the same size and SHA-256 count as archived (an earlier attempt's
    commit); other bytes fail the transfer until an operator moves the object or changes the key."""

    def __init__(self, message: str, *, reason: StorageReason = "key_taken") -> None:
        super().__init__(message, reason="key_taken")  # `reason` only fits the error tables' Outcome


class ObjectLocked(StorageRefused):
    """Permanent, reason ``object_locked``: the store refused to delete or replace an object because a
    retention period or a hold protects it (S3 Object Lock, GCS object retention or holds, an Azure
    immutability policy or legal hold). Nothing was changed. A transfer that had to replace its damaged
    object writes a copy to a new key instead (`worker.transfer.relocate`)."""

    def __init__(self, message: str, *, reason: StorageReason = "object_locked") -> None:
        super().__init__(message, reason="object_locked")  # `reason` only fits the error tables' Outcome
ErasureReason = Literal["retention", "legal_hold"]


class ErasureRefused(ObjectLocked):
    """Permanent, reason ``retention`` (an unexpired retention period: S3 Object Lock, GCS object or bucket
    retention, an Azure immutability policy) or ``legal_hold`` (S3 or Azure legal hold, GCS temporary or
    event-based hold): the store refused to delete a version of an object (`Storage.erase`). The message
    names the storage, the object, the version and why."""

    def __init__(self, message: str, *, reason: StorageReason = "retention") -> None:
        StorageRefused.__init__(self, message, reason="legal_hold" if reason == "legal_hold" else "retention")


class StreamApiError(ArchiverError):
    """An error answer from Stream's API, with its body's ``code`` and ``message``."""

    def __init__(self, message: str, *, status: int = 0, code: int | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code

    @property
    def gone(self) -> bool:
        """Stream has no such call or file: 404, or 400 with its "does not exist" code 16 (the spec
        lists only 400 and 429 as errors of these endpoints)."""
        return self.status == 404 or (self.status == 400 and self.code == 16)


class StreamUnavailable(StreamApiError, TransientError):
    pass


class StreamRefused(StreamApiError, PermanentError):
    pass


class CopyRefused(ArchiverError):
    """A server-side copy (the store fetching the URL itself) was refused or is not implemented;
    nothing is left behind, and the caller streams the bytes through the worker instead."""


class LinkUnavailable(ArchiverError):
    """No short-lived download link can be made (`archiver link`, the status page's download button): the
    transfer is not archived, its storage cannot sign one (a storage authenticated by a SAS token, GCS
    without a service-account key or signBlob rights, a plug-in without links; the message says what
    it would need), or the object is on local disk and `public_url` is not set."""


class LeaseLost(ArchiverError):
    """The transfer was claimed by another worker (its lease expired); this copy must stop."""


class LedgerSchemaError(ArchiverError):
    """The ledger in Redis has a schema version this archiver cannot use (newer, unknown, or a
    migration failed); ``found`` is its version as stored, ``supported`` this archiver's."""

    def __init__(self, message: str, *, found: str | None, supported: int) -> None:
        super().__init__(message)
        self.found, self.supported = found, supported


class AuditLogError(ArchiverError):
    """The audit log cannot be exported as it stands: its entries in Redis do not follow the last
    export, or an export could not be written or read back. Nothing is trimmed from Redis; the next
    export tries again (`worker.auditlog.export`)."""
