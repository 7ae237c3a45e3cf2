"""Azure SAS download links: which credentials can sign one, and signing it (`AzureStorage.link`).

Two ways, decided once from how the storage logs in (`signing_mode`):

- ``account_key`` (``abs_account_key``, or a connection string holding ``AccountKey``): a service SAS
  for the one blob, read only, signed locally; nothing is sent;
- ``user_delegation`` (a service principal, a managed identity or any other Entra credential): Azure
  first gives a user delegation key for the link's lifetime (Get User Delegation Key, one request; the
  identity needs ``Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action``,
  e.g. the role Storage Blob Delegator, besides reading the blob), which signs a user delegation SAS.

A storage authenticated by a SAS token (``abs_sas_token``, or a connection string holding one) has no
key to sign with: it declares no links (handing out its own token would hand out every permission it
grants, for as long as it lasts). A SAS over an ``https`` endpoint allows https only.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError
from azure.storage.blob import BlobSasPermissions, ContainerClient, generate_blob_sas

from worker.errors import LinkUnavailable, StorageRefused
from worker.storage.azure.auth import TokenCredential
from worker.storage.azure.container import AzureContainer
from worker.storage.azure.errors import map_error
from worker.storage.base import MAX_SIGNED_TTL

SigningMode = Literal["account_key", "user_delegation"]
HOW_TO_SIGN = ("Azure signs download links with the account key (abs_account_key, or a connection string with "
               "AccountKey) or, for an Entra identity (service principal, managed identity), with a user delegation "
               "key: the identity needs generateUserDelegationKey on the account (the role Storage Blob Delegator)")
_SKEW = timedelta(minutes=5)  # a user delegation key starts this early, for clocks a little ahead of ours


def signing_mode(client: ContainerClient, token: TokenCredential | None) -> SigningMode | None:
    """How a storage on `client`, logged in with the Entra credential `token` if any, can sign a SAS
    (see the module docstring), or None when it cannot."""
    if getattr(client.credential, "account_key", None):
        return "account_key"
    return "user_delegation" if token is not None else None


def sas_url(container: AzureContainer, key: str, full_key: str, ttl: timedelta, mode: SigningMode | None) -> str:
    """The blob's URL with a read-only SAS expiring `ttl` from now (whole seconds, rounded up).
    Raises LinkUnavailable (no way to sign; past 7 days with a user delegation key), StorageRefused /
    StorageUnavailable (the user delegation key refused or not given)."""
    where = container.where("link", key)
    if mode is None:
        raise LinkUnavailable(f"{where}: a storage that logs in with a SAS token cannot sign links. {HOW_TO_SIGN}")
    if mode == "user_delegation" and ttl > MAX_SIGNED_TTL:
        raise LinkUnavailable(f"{where}: a user delegation SAS lasts at most 7 days, not {ttl}")
    client = container.client
    expiry = datetime.now(UTC) + timedelta(seconds=max(1, math.ceil(ttl.total_seconds())))
    protocol = "https" if urlsplit(client.url).scheme == "https" else None
    signing: dict[str, object] = {"account_key": getattr(client.credential, "account_key", None)}
    if mode == "user_delegation":
        signing = {"user_delegation_key": _delegation_key(container, where, expiry)}
    sas = generate_blob_sas(client.account_name or "", container.name or "", full_key,
                            permission=BlobSasPermissions(read=True), expiry=expiry, protocol=protocol,
                            **signing)  # type: ignore[arg-type] # one of the two keys, the other absent
    return f"{container.blob(full_key).url}?{sas}"


def _delegation_key(container: AzureContainer, where: str, expiry: datetime) -> object:
    """A user delegation key valid until `expiry` (from a little before now: at most 7 days in all)."""
    start = max(datetime.now(UTC) - _SKEW, expiry - MAX_SIGNED_TTL)
    try:
        service = container.client._get_blob_service_client()  # documented: the container's pipeline and login
        return service.get_user_delegation_key(start, expiry)
    except AzureError as exc:
        error = map_error(exc, where, container.scrub)
        if isinstance(error, StorageRefused) and error.reason == "permission":
            error = StorageRefused(f"{error} (no user delegation key). {HOW_TO_SIGN}", reason="permission")
        raise error from exc
