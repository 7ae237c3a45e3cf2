"""Azure SDK errors → `worker.errors`, at the edge of the Azure Blob backend.

The mapping, by Azure error code first (a HEAD carries it in ``x-ms-error-code``), then by status:

- ``ClientAuthenticationError`` (``AuthenticationFailed``, ``InvalidAuthenticationInfo``, a refused or
  unobtainable Entra token, a malformed account key) → StorageRefused ``credentials``;
- ``ContainerNotFound`` → StorageRefused ``missing_bucket``; ``BlobNotFound`` (or a bare 404) on
  stat/read → FileNotFoundError;
- ``BlobAlreadyExists`` (409) and ``ConditionNotMet`` (412): a create-only ``If-None-Match: *`` found a
  blob at the name → KeyTaken ``key_taken``;
- ``BlobImmutableDueToPolicy`` and ``BlobImmutableDueToLegalHold`` (409: an immutability policy or a
  legal hold protects the blob or version) → ObjectLocked ``object_locked``;
- ``Md5Mismatch`` / ``Crc64Mismatch`` (the store rejected a checksum; Azurite says ``InvalidOperation``
  "Provided contentMD5 doesn't match.") → VerificationFailed;
- 403 (``AuthorizationPermissionMismatch``, ``AuthorizationFailure``, ...) → StorageRefused ``permission``,
  but ``credentials`` when the message says "Server failed to authenticate the request" (a bad key or
  an expired SAS: Azure's ``AuthenticationFailed``, which Azurite answers as ``AuthorizationFailure``);
- 429, 503 and ``ServerBusy`` / ``OperationTimedOut`` → StorageUnavailable ``throttled``; other 5xx →
  ``server_error``; other 4xx → StorageRefused ``other``;
- ``ServiceRequestError`` / ``ServiceResponseError`` (refused connections, DNS, TLS, timeouts,
  resets) → StorageUnavailable ``unreachable``; any other ``AzureError`` → StorageUnavailable ``other``.

Messages keep the first line of Azure's message only (its dump of the response body is dropped),
every known secret is replaced by ``***`` and every query string in SDK text by ``?***``: a
connection error quotes the request URL, and with a SAS token or a signed source URL the query
string is the credential (`worker.storage.errors.Scrubber`).
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from worker.storage.errors import (
    CHECKSUM_MISMATCH,
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

TABLE = ErrorTable(
    Rule(CHECKSUM_MISMATCH, codes={"Md5Mismatch", "Crc64Mismatch"}),
    Rule(CHECKSUM_MISMATCH, statuses={400}, words="md5.*(did not|doesn't|does not) match"),  # Azurite: InvalidOperation
    Rule(refused("missing_bucket"), codes={"ContainerNotFound"}),
    Rule(MISSING, codes={"BlobNotFound"}),
    Rule(TAKEN, codes={"BlobAlreadyExists", "ConditionNotMet"}),
    Rule(LOCKED, codes={"BlobImmutableDueToPolicy", "BlobImmutableDueToLegalHold"}),
    # a bad signature, whatever the code says (Azurite answers AuthorizationFailure):
    Rule(refused("credentials"), statuses={403}, words="server failed to authenticate the request"),
    Rule(refused("permission"), statuses={403}),
    Rule(unavailable("throttled"), codes={"ServerBusy", "OperationTimedOut", "TooManyRequests"}, statuses={429, 503}),
    Rule(unavailable("server_error"), statuses=frozenset({408, *SERVER_ERRORS})),
)


def error_code(exc: AzureError) -> str:
    """Azure's error code (``ContainerNotFound``, ...), or "" when the response carried none."""
    code = getattr(exc, "error_code", None)
    if isinstance(code, Enum):
        code = code.value
    return str(code) if code else ""


def first_line(text: object) -> str:
    """The first non-empty line of an SDK message (Azure appends request ids and the XML body)."""
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def status_of(exc: AzureError) -> int:
    return exc.status_code if isinstance(exc, HttpResponseError) and exc.status_code else 0


def azure_message(exc: AzureError) -> str:
    """Azure's own message: the first line of the SDK's (for a HEAD, which has no body, the
    response's reason phrase, where Azure puts it)."""
    message = first_line(exc.message)
    reason = getattr(exc, "reason", None)
    if message.startswith("Operation returned an invalid status") and reason:
        return first_line(reason)
    return message


def describe(exc: AzureError, where: str, scrub: Scrubber) -> str:
    """``<where> failed: <code> (HTTP <status>): <Azure's message>``, scrubbed."""
    status = status_of(exc)
    detail = f"{error_code(exc) or type(exc).__name__}" + (f" (HTTP {status})" if status else "")
    return f"{where} failed: {detail}: {scrub(azure_message(exc))}"


def map_error(exc: AzureError, where: str, scrub: Scrubber, *, missing: bool = False) -> Failure:
    """The `worker.errors` exception (or FileNotFoundError when `missing` allows it) for `exc`,
    raised while doing what `where` describes (storage, action, container and key)."""
    code, status, text = error_code(exc), status_of(exc), describe(exc, where, scrub)
    if isinstance(exc, ClientAuthenticationError):
        return refused("credentials").error(text)
    if isinstance(exc, HttpResponseError) and status:
        code = code or ("BlobNotFound" if status == 404 else "")  # a HEAD's 404 carries no code
        outcome = TABLE.outcome(code, status, azure_message(exc), missing=missing)
        hint = f" ({TAKEN_HINT})" if outcome is TAKEN else f" ({LOCKED_HINT})" if outcome is LOCKED else ""
        return outcome.error(text + hint)
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return unavailable("unreachable").error(text)
    return unavailable("other").error(text)
