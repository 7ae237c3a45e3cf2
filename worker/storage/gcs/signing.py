"""GCS V4 signed URLs: which credentials can sign one, and signing it (`GCSStorage.link`).

Two ways, decided once from the credentials the storage logs in with (`signing_mode`):

- ``key``: credentials that hold a private key (a service-account JSON: ``gcs_credentials`` or
  ``gcs_credentials_file``; or google-auth's own signing credentials) sign locally; nothing is sent;
- ``iam``: the credentials of a service account without its key (the metadata server on GCE or GKE,
  workload identity, federation impersonating a service account) have the IAM Credentials API sign
  for them (``signBlob``: one request, with the account's own token). The account needs
  ``iam.serviceAccounts.signBlob`` on itself (the role Service Account Token Creator).

Any other credentials (anonymous, as against an emulator; a user's own login) cannot sign: the
storage declares no links. A signed URL lasts at most 7 days (GCS's limit) and is addressed at the
storage's endpoint (``gcs_endpoint_url``, else storage.googleapis.com).
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any, Literal

from google.auth import credentials as google_credentials
from google.auth import exceptions as auth
from google.auth.transport.requests import Request

from worker.errors import LinkUnavailable, StorageRefused, StorageUnavailable
from worker.storage.base import MAX_SIGNED_TTL
from worker.storage.gcs.bucket import GCSBucket
from worker.storage.gcs.errors import ERRORS

SigningMode = Literal["key", "iam"]
HOW_TO_SIGN = ("GCS signs download links with a service-account key (gcs_credentials or gcs_credentials_file), "
               "or for a service account without its key through IAM signBlob (the account needs "
               "iam.serviceAccounts.signBlob on itself: the role Service Account Token Creator)")
_SIGN_BLOB_FAILED = "IAM signBytes API"  # google-cloud-storage's message when signBlob answers other than 200


def credentials_of(bucket: GCSBucket) -> Any:
    """The credentials the storage's authorized session sends (None when it has none)."""
    return getattr(bucket.session, "credentials", None)


def signing_mode(credentials: Any) -> SigningMode | None:
    """How `credentials` can sign a V4 URL (see the module docstring), or None when they cannot."""
    if isinstance(credentials, google_credentials.Signing):
        return "key"
    if getattr(credentials, "service_account_email", None):
        return "iam"
    return None


def signed_url(bucket: GCSBucket, key: str, full_key: str, ttl: timedelta, mode: SigningMode | None) -> str:
    """A V4 signed GET URL of object `full_key` (`key` under the prefix) for `ttl`. Raises LinkUnavailable
    (no way to sign, or past 7 days), StorageRefused / StorageUnavailable (a token or signBlob refused
    or unreachable)."""
    where = bucket.where("link", key)
    if mode is None:
        raise LinkUnavailable(f"{where}: these credentials cannot sign a URL. {HOW_TO_SIGN}")
    if ttl > MAX_SIGNED_TTL:
        raise LinkUnavailable(f"{where}: GCS signed URLs last at most 7 days, not {ttl}")
    extra: dict[str, Any] = {}
    try:
        if mode == "iam":
            extra = _iam_signer(credentials_of(bucket))
        return str(bucket.blobs.blob(full_key).generate_signed_url(
            version="v4", method="GET", expiration=timedelta(seconds=max(1, math.ceil(ttl.total_seconds()))),
            api_access_endpoint=bucket.endpoint, **extra))
    except auth.TransportError as exc:
        if _SIGN_BLOB_FAILED not in str(exc):
            raise bucket.error(exc, "link", key) from exc
        detail = bucket.scrub(str(exc))
        if "PERMISSION_DENIED" in detail or "403" in detail:
            raise StorageRefused(f"{where} failed: IAM signBlob refused: {detail}. {HOW_TO_SIGN}",
                                 reason="permission") from exc
        raise StorageUnavailable(f"{where} failed: IAM signBlob: {detail}", reason="server_error") from exc
    except ERRORS as exc:
        raise bucket.error(exc, "link", key) from exc


def _iam_signer(credentials: Any) -> dict[str, Any]:
    """The service account's e-mail and a live token, for signBlob: the metadata server names the
    account ("default" until asked) and gives the token on a refresh."""
    if not credentials.valid or credentials.service_account_email == "default":
        credentials.refresh(Request())
    return {"service_account_email": credentials.service_account_email, "access_token": credentials.token}
