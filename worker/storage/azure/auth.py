"""How an Azure Blob storage reaches its container: the account URL and one way to authenticate.

One way is used, the first that applies (`config.storages.AzureOptions`): ``abs_connection_string``;
``abs_sas_token``; ``abs_account_key`` (Shared Key); a service principal (``abs_client_id`` +
``abs_client_secret`` + ``abs_tenant_id``, azure-identity's ClientSecretCredential); else
azure-identity's DefaultAzureCredential: environment variables (``AZURE_CLIENT_ID``, ...), workload
identity, managed identity (App Service / Functions ``IDENTITY_ENDPOINT``, Azure Arc, Cloud Shell,
IMDS on VMs and AKS; a user-assigned identity is chosen with ``AZURE_CLIENT_ID``), then developer
tools (Azure CLI, azd, PowerShell).

The account URL is ``abs_endpoint_url`` (emulators, sovereign clouds, private endpoints) or
``https://<abs_account_name>.blob.core.windows.net``. A service principal's authority is
``abs_authority_host`` when given (default: the public cloud). Instance discovery (a request to
login.microsoftonline.com to validate the authority) is turned off for an authority that is not one
of azure-identity's `AzureAuthorityHosts`: a private cloud or Azure Stack authority is unknown to
that service, and the operator named it explicitly.

Entra tokens are only sent over HTTPS (azure-core refuses a bearer token on plain HTTP).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.identity import AzureAuthorityHosts, ClientSecretCredential, DefaultAzureCredential
from azure.storage.blob import ContainerClient, LinearRetry

from config import TransferTuning
from config.storages import AzureOptions
from worker.storage.errors import SDK_ATTEMPTS, SDK_BACKOFF

PUBLIC_SUFFIX = ".blob.core.windows.net"
DOWNLOAD_CHUNK = 4 * 1024 * 1024  # what one GET of a read holds in memory
_KNOWN_AUTHORITIES = frozenset(
    {AzureAuthorityHosts.AZURE_PUBLIC_CLOUD, AzureAuthorityHosts.AZURE_CHINA, AzureAuthorityHosts.AZURE_GOVERNMENT}
)

TokenCredential = ClientSecretCredential | DefaultAzureCredential
Credential = AzureNamedKeyCredential | AzureSasCredential | TokenCredential


def account_url(options: AzureOptions) -> str:
    """``abs_endpoint_url`` or the public-cloud URL of ``abs_account_name``. Raises ValueError
    when there is neither."""
    if options.abs_endpoint_url:
        return options.abs_endpoint_url.rstrip("/")
    if options.abs_account_name:
        return f"https://{options.abs_account_name}{PUBLIC_SUFFIX}"
    raise ValueError("an Azure storage needs abs_account_name or abs_endpoint_url (or abs_connection_string)")


def account_name(options: AzureOptions) -> str:
    """``abs_account_name``, else read from the endpoint: the first path segment of an emulator URL
    (``http://127.0.0.1:10000/devstoreaccount1``), else the first label of the host name."""
    if options.abs_account_name:
        return options.abs_account_name
    parts = urlsplit(account_url(options))
    return parts.path.strip("/").split("/")[0] or (parts.hostname or "").split(".")[0]


def secrets_of(options: AzureOptions) -> list[str]:
    """Every secret value the options hold, with the parts of a connection string that are secrets."""
    values = [s.get_secret_value() for s in (options.abs_connection_string, options.abs_account_key,
                                              options.abs_sas_token, options.abs_client_secret) if s]  # fmt: skip
    if options.abs_sas_token:
        values.append(options.abs_sas_token.get_secret_value().lstrip("?"))
    if options.abs_connection_string:
        for part in options.abs_connection_string.get_secret_value().split(";"):
            name, _, value = part.partition("=")
            if name.strip().lower() in ("accountkey", "sharedaccesssignature") and value:
                values.append(value.strip())
    return [v for v in values if v]


def make_credential(options: AzureOptions) -> Credential:
    """The credential for the first way in that `options` configure (see the module docstring)."""
    if options.abs_sas_token:
        return AzureSasCredential(options.abs_sas_token.get_secret_value().lstrip("?"))
    if options.abs_account_key:
        return AzureNamedKeyCredential(account_name(options), options.abs_account_key.get_secret_value())
    if options.abs_client_id and options.abs_client_secret and options.abs_tenant_id:
        authority = options.abs_authority_host
        host = urlsplit(authority if "//" in authority else f"//{authority}").hostname if authority else None
        extra: dict[str, Any] = {"authority": authority} if authority else {}
        return ClientSecretCredential(
            options.abs_tenant_id, options.abs_client_id, options.abs_client_secret.get_secret_value(),
            disable_instance_discovery=host is not None and host not in _KNOWN_AUTHORITIES, **extra,
        )  # fmt: skip
    return DefaultAzureCredential()


def client_settings(tuning: TransferTuning, retries: int) -> dict[str, Any]:
    """Client keywords: `retries` retries 0-2 s apart (the ledger retries whole transfers), timeouts from
    `tuning`, one Put Blob up to the multipart threshold, reads in 4 MiB GETs."""
    return {
        "retry_policy": LinearRetry(backoff=SDK_BACKOFF, random_jitter_range=SDK_BACKOFF, retry_total=retries),
        "connection_timeout": tuning.connect_timeout.total_seconds(),
        "read_timeout": tuning.read_timeout.total_seconds(),
        "max_single_put_size": max(int(tuning.multipart_threshold), 1),
        "max_single_get_size": DOWNLOAD_CHUNK,
        "max_chunk_get_size": DOWNLOAD_CHUNK,
    }


def make_container_client(
    options: AzureOptions, container: str, tuning: TransferTuning, *, retries: int = SDK_ATTEMPTS - 1
) -> tuple[ContainerClient, TokenCredential | None]:
    """A client for `container`, and the azure-identity credential it uses (to close with it), if
    any. Raises ValueError for unusable options (e.g. a malformed connection string)."""
    settings = client_settings(tuning, retries)
    if options.abs_connection_string:
        conn = options.abs_connection_string.get_secret_value()
        return ContainerClient.from_connection_string(conn, container, **settings), None
    credential = make_credential(options)
    client = ContainerClient(account_url(options), container, credential=credential, **settings)
    token = credential if isinstance(credential, ClientSecretCredential | DefaultAzureCredential) else None
    return client, token


def public_location(client: ContainerClient) -> str:
    """``abs://account/container/`` on the public cloud, else the container's URL (no query string,
    no user info): never a credential."""
    parts = urlsplit(client.url)
    host = parts.hostname or ""
    if host.endswith(PUBLIC_SUFFIX):
        return f"abs://{host.removesuffix(PUBLIC_SUFFIX)}/{client.container_name}/"
    netloc = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}/"
