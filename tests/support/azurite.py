"""A real Azurite (the Azure Storage emulator, blob service only) on a free loopback port, and small
helpers to look behind an AzureStorage's back.

Test modules import the session fixture by name::

    from tests.support.azurite import azurite  # noqa: F401 - session fixture, used by name

`azurite_tls` is a second one over HTTPS that accepts Entra bearer tokens (``--oauth basic``; it
checks their issuer, audience and lifetime), for `tests.support.entra`. `error_endpoint` is not
Azurite: a loopback server answering every request with one Azure error, for what Azurite never says.

Azurite is installed into ``.tools/`` by ``scripts/test``. It is started with
``--skipApiVersionCheck`` (azure-storage-blob speaks a newer API version than it knows) and
``--disableTelemetry`` (no traffic beyond loopback).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import (
    AccountSasPermissions,
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    ResourceTypes,
    generate_account_sas,
    generate_container_sas,
)

from config import StorageConfig, TransferTuning
from tests.support.ports import free_port
from tests.support.servers import start_process
from worker.storage.azure.storage import AzureStorage

ROOT = Path(__file__).resolve().parents[2]
AZURITE = ROOT / ".tools" / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"  # Azurite's well-known development account and key
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
MiB = 1024 * 1024
TEST_TUNING = TransferTuning.model_validate(
    {"part_size": 5 * MiB, "multipart_threshold": 5 * MiB, "parts_in_flight": 2,
     "connect_timeout": "2s", "read_timeout": "30s"}
)  # fmt: skip


def start_azurite(workdir: Path, *, tls: tuple[Path, Path] | None = None) -> tuple[str, Callable[[], None]]:
    """Start ``azurite-blob`` on a free port (over HTTPS with ``tls`` = (cert, key), with OAuth
    ``basic`` then); return the account's blob endpoint URL and a stop function."""
    if not AZURITE.exists():
        pytest.fail(f"Azurite is not installed at {AZURITE}: run scripts/test once, it installs it")
    port = free_port()
    command = [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
               "--skipApiVersionCheck", "--silent", "--disableTelemetry"]  # fmt: skip
    if tls is not None:
        command += ["--cert", str(tls[0]), "--key", str(tls[1]), "--oauth", "basic"]
    stop = start_process(command, port, cwd=workdir)
    scheme = "https" if tls is not None else "http"
    return f"{scheme}://127.0.0.1:{port}/{ACCOUNT}", stop


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The blob endpoint URL (``http://127.0.0.1:PORT/devstoreaccount1``) of one Azurite per session."""
    url, stop = start_azurite(tmp_path_factory.mktemp("azurite"))
    try:
        yield url
    finally:
        stop()


@pytest.fixture(scope="session")
def azurite_tls(tls: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The blob endpoint URL (``https://...``) of an Azurite over HTTPS accepting Entra tokens; the
    `tls` fixture (tests.support.entra) gives its certificate."""
    url, stop = start_azurite(tmp_path_factory.mktemp("azurite-tls"), tls=tls)
    try:
        yield url
    finally:
        stop()


@contextmanager
def error_endpoint(status: int, code: str) -> Iterator[str]:
    """A loopback "account" answering every request with `status` and ``x-ms-error-code: code``."""

    class Answer(BaseHTTPRequestHandler):
        def reply(self) -> None:
            self.send_response(status)
            self.send_header("x-ms-error-code", code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = do_PUT = do_DELETE = reply

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{ACCOUNT}"
    finally:
        server.shutdown()
        server.server_close()


def connection_string(endpoint: str) -> str:
    scheme = endpoint.split(":", 1)[0]
    return (f"DefaultEndpointsProtocol={scheme};AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={endpoint};")  # fmt: skip


def service_client(endpoint: str) -> BlobServiceClient:
    """A plain Shared Key client for Azurite, to look behind a storage's back."""
    return BlobServiceClient.from_connection_string(connection_string(endpoint))


def create_container(endpoint: str, name: str | None = None) -> str:
    """Create a container (a fresh unique name by default) and return its name."""
    container = name or f"test-{uuid.uuid4().hex[:20]}"
    with service_client(endpoint) as service:
        service.create_container(container)
    return container


def container_client(endpoint: str, container: str) -> ContainerClient:
    return ContainerClient.from_connection_string(connection_string(endpoint), container)


def blob_names(endpoint: str, container: str) -> list[str]:
    """Every committed blob's full name in `container`, sorted."""
    with container_client(endpoint, container) as client:
        return sorted(blob.name for blob in client.list_blobs())


def uncommitted(endpoint: str, container: str) -> list[str]:
    """Every blob name in `container` that has uncommitted blocks (committed blob or not), sorted."""
    with container_client(endpoint, container) as client:
        names = [blob.name for blob in client.list_blobs(include=["uncommittedblobs"])]
        return sorted(name for name in names if client.get_blob_client(name).get_block_list("uncommitted")[1])


def account_sas(hours: float = 1) -> str:
    """An account SAS token allowing everything a storage does (negative `hours`: already expired)."""
    permission = AccountSasPermissions(read=True, write=True, delete=True, list=True, add=True, create=True)
    return generate_account_sas(ACCOUNT, ACCOUNT_KEY, ResourceTypes(container=True, object=True), permission,
                                expiry=datetime.now(UTC) + timedelta(hours=hours))  # fmt: skip


def container_sas(container: str, **permissions: bool) -> str:
    """A SAS token for one container; `permissions` default to read, write, delete, create, add."""
    allowed = permissions or {"read": True, "write": True, "delete": True, "create": True, "add": True}
    return generate_container_sas(ACCOUNT, container, ACCOUNT_KEY, permission=ContainerSasPermissions(**allowed),
                                  expiry=datetime.now(UTC) + timedelta(hours=1))  # fmt: skip


def azure_config(endpoint: str, container: str, prefix: str = "", name: str = "abs-test", **auth: Any) -> StorageConfig:
    """A ``[[storages]]`` entry for `container` on Azurite; `auth` are ``abs_*`` options (default:
    the account key)."""
    options = {"abs_account_name": ACCOUNT, "abs_endpoint_url": endpoint, **(auth or {"abs_account_key": ACCOUNT_KEY})}
    return StorageConfig.model_validate(
        {"name": name, "storage_type": "abs", "bucket": container, "path": prefix, "azure_blob": options}
    )


def azure_storage(
    endpoint: str, container: str, prefix: str = "", *, tuning: TransferTuning = TEST_TUNING, **auth: Any
) -> AzureStorage:
    """An AzureStorage on Azurite, built the way the service builds it (`from_config`)."""
    return AzureStorage.from_config(azure_config(endpoint, container, prefix, **auth), tuning)
