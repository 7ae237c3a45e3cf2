"""botocore's errors → `worker.errors`, with a reason an operator can act on.

- STS refuses ``AssumeRole`` (AccessDenied, InvalidClientTokenId, ...); InvalidAccessKeyId,
  SignatureDoesNotMatch, ExpiredToken, InvalidToken; no credentials found → StorageRefused ``credentials``
- AccessDenied, AllAccessDisabled (and a bare 403 to a HEAD) → StorageRefused ``permission``
- NoSuchBucket → StorageRefused ``missing_bucket``
- InvalidArgument, NotImplemented, InvalidRequest (400/501) naming a checksum or Content-MD5 →
  StorageRefused ``checksum_rejected``
- BadDigest, InvalidDigest, XAmzContentSHA256Mismatch → StorageUnavailable ``checksum_rejected``
- SlowDown and the other throttling codes, 429, 503 → StorageUnavailable ``throttled``
- other 5xx, InternalError → StorageUnavailable ``server_error``
- RequestTimeout, OperationAborted, NoSuchUpload; a truncated body → StorageUnavailable ``other``
- connection refused or reset, timeouts → StorageUnavailable ``unreachable``
- any other 4xx → StorageRefused ``other``

A store that refuses boto3's checksum headers (R2, MinIO, B2, Wasabi, Ceph and OVH have, at some
version) is refused permanently, with a hint to set ``s3_request_checksum = "when_required"``: retrying
the same request cannot help. A digest the store found *wrong* (BadDigest) means bytes were damaged on
the way, so it is transient: the transfer is retried (with the same hint in its error, since stores that
do not understand a checksum header have answered with these codes too; `archiver storage check` tells).
"""

from __future__ import annotations

from botocore import exceptions as boto

from worker.errors import StorageReason, StorageRefused, StorageUnavailable

CHECKSUM_HINT = 'the store refuses boto3\'s checksum headers: set s3_request_checksum = "when_required" for it'
MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_CREDENTIAL_CODES = frozenset(
    "InvalidAccessKeyId SignatureDoesNotMatch ExpiredToken ExpiredTokenException InvalidToken TokenRefreshRequired"
    " InvalidClientTokenId UnrecognizedClientException".split()
)
_PERMISSION_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "403"})
_DIGEST_CODES = frozenset({"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"})
_HEADER_CODES = frozenset({"InvalidArgument", "NotImplemented", "InvalidRequest", "BadRequest", "400", "501"})
_THROTTLE_CODES = frozenset(
    "SlowDown Throttling ThrottlingException RequestLimitExceeded TooManyRequests RequestThrottled"
    " BandwidthLimitExceeded ServiceUnavailable 503".split()
)
_OTHER_TRANSIENT_CODES = frozenset({"RequestTimeout", "OperationAborted", "NoSuchUpload"})
_CREDENTIAL_ERRORS = (boto.NoCredentialsError, boto.PartialCredentialsError, boto.CredentialRetrievalError)
_UNREACHABLE_ERRORS = (boto.ConnectionError, boto.HTTPClientError)
_OTHER_TRANSIENT_ERRORS = (boto.IncompleteReadError, boto.FlexibleChecksumError)

Mapped = tuple[type[StorageRefused] | type[StorageUnavailable], StorageReason]


def classify(code: str, status: int, message: str, operation: str = "") -> Mapped:
    """The exception class and reason for an S3 (or STS) error answer."""
    if operation == "AssumeRole":
        return (StorageUnavailable, "server_error") if status >= 500 else (StorageRefused, "credentials")
    if code in _CREDENTIAL_CODES:
        return StorageRefused, "credentials"
    if code in _PERMISSION_CODES:
        return StorageRefused, "permission"
    if code == "NoSuchBucket":
        return StorageRefused, "missing_bucket"
    if code in _DIGEST_CODES:
        return StorageUnavailable, "checksum_rejected"
    if checksum_rejected(code, message):
        return StorageRefused, "checksum_rejected"
    if code in _THROTTLE_CODES or status in (429, 503):
        return StorageUnavailable, "throttled"
    if status >= 500 or code == "InternalError":
        return StorageUnavailable, "server_error"
    if code in _OTHER_TRANSIENT_CODES:
        return StorageUnavailable, "other"
    return StorageRefused, "other"


def checksum_rejected(code: str, message: str) -> bool:
    """True for an answer that refuses a checksum header (or finds its digest wrong)."""
    if code in _DIGEST_CODES:
        return True
    text = message.lower()
    return code in _HEADER_CODES and ("x-amz-checksum" in text or "content-md5" in text or "checksum" in text)


def classify_exception(exc: Exception) -> Mapped | None:
    """Class and reason for a botocore exception that is not an error answer; None if not ours."""
    if isinstance(exc, _CREDENTIAL_ERRORS):
        return StorageRefused, "credentials"
    if isinstance(exc, _UNREACHABLE_ERRORS):
        return StorageUnavailable, "unreachable"
    if isinstance(exc, _OTHER_TRANSIENT_ERRORS):
        return StorageUnavailable, "other"
    return None
