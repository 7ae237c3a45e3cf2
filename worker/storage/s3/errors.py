"""botocore's errors → `worker.errors`, with a reason an operator can act on.

- STS refuses ``AssumeRole`` (AccessDenied, InvalidClientTokenId, ...); InvalidAccessKeyId,
  SignatureDoesNotMatch, ExpiredToken, InvalidToken; no credentials found → StorageRefused ``credentials``
- AccessDenied saying "object lock" (S3: "Access Denied because object protected by object lock.": a
  delete of a version under retention or a legal hold) → ObjectLocked ``object_locked``
- AccessDenied, AllAccessDisabled (and a bare 403 to a HEAD) → StorageRefused ``permission``
- NoSuchBucket → StorageRefused ``missing_bucket``
- InvalidArgument, NotImplemented, InvalidRequest (400/501) naming a checksum or Content-MD5 →
  StorageRefused ``checksum_rejected``
- PreconditionFailed (412: the create-only ``If-None-Match: *`` found an object at the key) → KeyTaken
  ``key_taken``; ConditionalRequestConflict (409: another conditional write of the key is under way)
  → StorageUnavailable ``other``; NotImplemented about a header (a store without conditional writes)
  → StorageRefused ``other``; the message of any NotImplemented, or of an answer naming If-None-Match,
  hints at ``create_only = "head"``
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

from typing import TYPE_CHECKING

from botocore import exceptions as boto

from worker.storage.errors import (
    CONDITION_HINT,
    LOCKED,
    LOCKED_HINT,
    MISSING,
    SERVER_ERRORS,
    TAKEN,
    TAKEN_HINT,
    ErrorTable,
    Rule,
    refused,
    unavailable,
)

if TYPE_CHECKING:
    from worker.storage.errors import Failure, Scrubber

CHECKSUM_HINT = 'the store refuses boto3\'s checksum headers: set s3_request_checksum = "when_required" for it'
MD5_HINT = "the store refused the Content-MD5 header or found it wrong"
_CREDENTIAL_CODES = frozenset(
    "InvalidAccessKeyId SignatureDoesNotMatch ExpiredToken ExpiredTokenException InvalidToken TokenRefreshRequired"
    " InvalidClientTokenId UnrecognizedClientException".split()
)
_THROTTLE_CODES = frozenset(
    "SlowDown Throttling ThrottlingException RequestLimitExceeded TooManyRequests RequestThrottled"
    " BandwidthLimitExceeded ServiceUnavailable 503".split()
)
_HEADER_CODES = frozenset({"InvalidArgument", "NotImplemented", "InvalidRequest", "BadRequest", "400", "501"})

TABLE = ErrorTable(
    Rule(refused("missing_bucket"), codes={"NoSuchBucket"}),
    Rule(MISSING, codes={"404", "NoSuchKey", "NotFound"}, statuses={404}),
    Rule(refused("credentials"), codes=_CREDENTIAL_CODES),
    Rule(LOCKED, codes={"AccessDenied"}, words="object lock"),
    Rule(refused("permission"), codes={"AccessDenied", "AllAccessDisabled", "403"}),
    Rule(unavailable("checksum_rejected"), codes={"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"}),
    Rule(refused("checksum_rejected"), codes=_HEADER_CODES, words="checksum|content-md5"),
    Rule(TAKEN, codes={"PreconditionFailed"}, statuses={412}),
    Rule(unavailable("other"), codes={"ConditionalRequestConflict"}),
    Rule(refused("other"), codes={"NotImplemented"}, words="header|if-none-match"),
    Rule(unavailable("throttled"), codes=_THROTTLE_CODES, statuses={429, 503}),
    Rule(unavailable("server_error"), codes={"InternalError"}, statuses=SERVER_ERRORS),
    Rule(unavailable("other"), codes={"RequestTimeout", "OperationAborted", "NoSuchUpload"}),
)
ASSUME_ROLE = ErrorTable(Rule(unavailable("server_error"), statuses=SERVER_ERRORS), default=refused("credentials"))
_BY_TYPE = (
    ((boto.NoCredentialsError, boto.PartialCredentialsError, boto.CredentialRetrievalError),
     refused("credentials")),
    ((boto.ConnectionError, boto.HTTPClientError), unavailable("unreachable")),
    ((boto.IncompleteReadError, boto.FlexibleChecksumError), unavailable("other")),
)  # fmt: skip


def s3_error(exc: Exception, where: str, scrub: Scrubber, hint: str, *, missing: bool = False) -> Failure | None:
    """The exception for a botocore error met doing what `where` says (`missing`: a 404 means no such
    key: FileNotFoundError; `hint` follows a refused checksum); None for anything else."""
    if isinstance(exc, boto.ClientError):
        error, meta = exc.response.get("Error", {}), exc.response.get("ResponseMetadata", {})
        code, status = str(error.get("Code", "Unknown")), int(meta.get("HTTPStatusCode", 0))
        message, role = str(error.get("Message", "")), exc.operation_name == "AssumeRole"
        outcome = (ASSUME_ROLE if role else TABLE).outcome(code, status, message, missing=missing)
        text = f"{where} failed: {code} (HTTP {status}): {message}"
        if role:
            text = f"{where} failed: assuming the role was refused: {code} (HTTP {status}): {message}"
        if outcome.reason == "checksum_rejected":
            text += f" ({hint})"
        elif outcome.reason == "key_taken":
            text += f" ({TAKEN_HINT})"
        elif outcome.reason == "object_locked":
            text += f" ({LOCKED_HINT})"
        elif code == "NotImplemented" or "if-none-match" in f"{message} {error.get('Header', '')}".lower():
            text += f" ({CONDITION_HINT})"
        return outcome.error(scrub(text))
    for types, outcome in _BY_TYPE:
        if isinstance(exc, types):
            return outcome.error(scrub(f"{where} failed: {type(exc).__name__}: {exc}"))
    return None
