"""Azure SDK errors → `worker.errors`, at the edge of the Azure Blob backend.

The mapping, by Azure error code first (a HEAD carries it in ``x-ms-error-code``), then by status:

- ``ClientAuthenticationError`` (``AuthenticationFailed``, ``InvalidAuthenticationInfo``, a refused or
  unobtainable Entra token, a malformed account key) → StorageRefused ``credentials``;
- ``ContainerNotFound`` → StorageRefused ``missing_bucket``; ``BlobNotFound`` (or a bare 404) on
  stat/read → FileNotFoundError;
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
string is the credential.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import Enum
from urllib.parse import quote

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from worker.errors import StorageRefused, StorageUnavailable, VerificationFailed

_CHECKSUM_CODES = frozenset({"Md5Mismatch", "Crc64Mismatch"})
_THROTTLED_CODES = frozenset({"ServerBusy", "OperationTimedOut", "TooManyRequests"})
_UNAUTHENTICATED = "server failed to authenticate the request"  # a bad signature, whatever the code says
_MD5_REJECTED = re.compile(r"md5.*(did not|doesn't|does not) match")  # Azurite: InvalidOperation, same meaning
_QUERY = re.compile(r"\?[^\s'\"<>)]*")


def error_code(exc: AzureError) -> str:
    """Azure's error code (``ContainerNotFound``, ...), or "" when the response carried none."""
    code = getattr(exc, "error_code", None)
    if isinstance(code, Enum):
        code = code.value
    return str(code) if code else ""


def first_line(text: object) -> str:
    """The first non-empty line of an SDK message (Azure appends request ids and the XML body)."""
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


class Scrubber:
    """Removes secrets from text bound for an error message or a log line."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        found = {s for s in secrets if s}
        found |= {quote(s, safe="") for s in found}  # as it appears inside a URL
        self._secrets = sorted(found, key=len, reverse=True)  # longest first: a key inside a connection string

    def with_secrets(self, *more: str) -> Scrubber:
        """A scrubber that also hides `more` (e.g. a signed source URL for one copy)."""
        return Scrubber([*self._secrets, *more])

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _QUERY.sub("?***", text)


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


def map_error(exc: AzureError, where: str, scrub: Scrubber, *, missing: bool = False) -> Exception:
    """The `worker.errors` exception (or FileNotFoundError when `missing` allows it) for `exc`,
    raised while doing what `where` describes (storage, action, container and key)."""
    code, status, text = error_code(exc), status_of(exc), describe(exc, where, scrub)
    if isinstance(exc, ClientAuthenticationError):
        return StorageRefused(text, reason="credentials")
    if isinstance(exc, HttpResponseError) and status:
        message = azure_message(exc).lower()
        if code in _CHECKSUM_CODES or (status == 400 and _MD5_REJECTED.search(message)):
            return VerificationFailed(text)
        return _by_status(text, code, status, missing=missing, unauthenticated=_UNAUTHENTICATED in message)
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return StorageUnavailable(text, reason="unreachable")
    return StorageUnavailable(text, reason="other")


def _by_status(text: str, code: str, status: int, *, missing: bool, unauthenticated: bool) -> Exception:
    if code == "ContainerNotFound":
        return StorageRefused(text, reason="missing_bucket")
    if missing and (code == "BlobNotFound" or (status == 404 and not code)):
        return FileNotFoundError(text)
    if status == 403:
        return StorageRefused(text, reason="credentials" if unauthenticated else "permission")
    if status in (429, 503) or code in _THROTTLED_CODES:
        return StorageUnavailable(text, reason="throttled")
    if status >= 500 or status == 408:
        return StorageUnavailable(text, reason="server_error")
    return StorageRefused(text, reason="other")
