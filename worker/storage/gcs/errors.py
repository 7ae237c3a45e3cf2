"""How Google Cloud Storage failures become `worker.errors`, at the edge of `worker.storage.gcs.storage`.

Four families of errors reach this edge, and each is reduced to an HTTP status (0: no answer at all)
and a text before one table decides:

- the library's calls (stat, delete) raise ``google.api_core.exceptions`` (``RetryError`` wraps the
  last one once the retry deadline passed) or ``google.cloud.storage.exceptions.InvalidResponse``;
- the raw upload and download requests return a `requests.Response` with GCS's JSON error body;
- google-auth raises ``RefreshError`` when the token endpoint refuses (``invalid_grant``: treated as
  401, or as 503 when it says the refusal is retryable), ``TransportError`` when it cannot be reached;
- requests / urllib3 / http.client raise connection errors and timeouts (status 0).

The table: 401 → StorageRefused "credentials"; 403 saying "retention" or "hold" (GCS: "Object '…' is subject to
object retention…", "… is under active Temporary hold …": a delete or an overwrite of a protected
object) → ObjectLocked "object_locked"; any other 403 → "permission"; 404 → FileNotFoundError for a
key, StorageRefused "missing_bucket" for a write or when GCS says "bucket does not exist", and
StorageUnavailable for an expired upload session; 429 → StorageUnavailable "throttled"; 5xx →
"server_error"; no answer, 408 → "unreachable"; a 400 about a checksum → VerificationFailed; 412
(``conditionNotMet``: an upload's create-only ``ifGenerationMatch=0`` found an object) → KeyTaken; any
other 4xx → StorageRefused "other". ``DataCorruption`` → VerificationFailed.

Messages name the storage, the action, ``gs://bucket/key``, the status and GCS's own message; in
that message query strings become ``?***`` (a resumable session URI is itself a credential) and
configured secrets ``***`` (`worker.storage.errors.Scrubber`).
"""

from __future__ import annotations

import http.client
from typing import TYPE_CHECKING, Literal

import requests
import urllib3
from google.api_core import exceptions as api
from google.auth import exceptions as auth
from google.cloud.storage import exceptions as media

from worker.errors import VerificationFailed
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

Missing = Literal["key", "bucket", "session"]  # what a 404 means for the call that got it

NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError, http.client.HTTPException, ConnectionError, TimeoutError,
)  # fmt: skip
# Every error type this module knows how to map; anything else is a bug and passes through.
ERRORS: tuple[type[BaseException], ...] = (
    api.GoogleAPIError, auth.GoogleAuthError, media.InvalidResponse, media.DataCorruption, *NETWORK_ERRORS,
)  # fmt: skip

# GCS answers with a status and a message, no code of its own: a 404's code says what was missing.
TABLE = ErrorTable(
    Rule(unavailable("unreachable"), statuses={0, 408}),
    Rule(refused("credentials"), statuses={401}),
    Rule(LOCKED, statuses={403}, words="retention|hold"),
    Rule(refused("permission"), statuses={403}),
    Rule(unavailable("throttled"), statuses={429}),
    Rule(refused("missing_bucket"), codes={"NoSuchBucket"}),
    Rule(unavailable("other"), codes={"NoSuchUpload"}),
    Rule(MISSING, codes={"NoSuchKey"}),
    Rule(unavailable("server_error"), statuses=SERVER_ERRORS),
    Rule(CHECKSUM_MISMATCH, statuses={400}, words="crc32c|md5|checksum"),
    Rule(TAKEN, statuses={412}),
)  # GCS: Provided CRC32C / MD5 hash "..." doesn't match


def response_text(response: requests.Response) -> str:
    """GCS's ``reason: message`` from a JSON error body, else the start of the body."""
    try:
        error = response.json().get("error", {})
    except ValueError:
        return response.text[:200] or response.reason or ""
    if not isinstance(error, dict):
        return str(error)[:200]
    errors = error.get("errors") or [{}]
    reason = errors[0].get("reason", "") if isinstance(errors[0], dict) else ""
    message = str(error.get("message", ""))
    return f"{reason}: {message}" if reason else message


def describe(exc: BaseException) -> tuple[int, str] | None:
    """The HTTP status (0: no answer) and text of a known failure; None for any other exception."""
    if isinstance(exc, api.RetryError):
        return describe(exc.cause) if exc.cause is not None else (0, f"RetryError: {exc.message}")
    if isinstance(exc, api.GoogleAPICallError):
        if isinstance(exc.response, requests.Response):  # GCS's own words, not the library's URL
            return exc.response.status_code, response_text(exc.response)
        return int(exc.code or 0), f"{type(exc).__name__}: {exc.message}"
    if isinstance(exc, media.InvalidResponse):
        return exc.response.status_code, response_text(exc.response)
    if isinstance(exc, auth.RefreshError):
        first = exc.args[0] if exc.args else ""
        return (503 if exc.retryable else 401), f"token refresh refused: {first}"
    if isinstance(exc, auth.TransportError):
        return 0, f"token endpoint unreachable: {type(exc).__name__}"
    if isinstance(exc, auth.GoogleAuthError):
        return 401, f"{type(exc).__name__}: {exc}"
    if isinstance(exc, NETWORK_ERRORS):
        return 0, f"{type(exc).__name__}: {exc}"
    return None


def missing_code(status: int, text: str, missing: Missing) -> str:
    """What a 404 (or 410) means for a call that can miss `missing` (the text may name the bucket)."""
    lowered = text.lower()
    if status not in (404, 410):
        return ""
    if missing == "bucket" or ("bucket does not exist" in lowered and "no such object" not in lowered):
        return "NoSuchBucket"
    return "NoSuchUpload" if missing == "session" else "NoSuchKey"


def build(where: str, status: int, text: str, missing: Missing, scrub: Scrubber) -> Failure:
    """The exception for a failure of the call described by `where` (storage, action, object)."""
    outcome = TABLE.outcome(missing_code(status, text, missing), status, text, missing=True)
    detail = scrub(f"HTTP {status}: {text}" if status else text)
    hint = f" ({TAKEN_HINT})" if outcome is TAKEN else f" ({LOCKED_HINT})" if outcome is LOCKED else ""
    return outcome.error(f"{where} failed: {detail}{hint}")  # `where` holds the key, which may contain "?" and "="


def mapped(exc: BaseException, where: str, missing: Missing, scrub: Scrubber) -> Failure | None:
    """The exception to raise for `exc` (see the module docstring), or None when it is not a
    storage failure (a bug: let it through unchanged)."""
    if isinstance(exc, media.DataCorruption):
        return VerificationFailed(f"{where} failed: data corruption: {scrub(str(exc))}")
    described = describe(exc)
    if described is None:
        return None
    return build(where, described[0], described[1], missing, scrub)
