"""A real ``gcp-storage-emulator`` process on a free loopback port, and small GCS helpers for tests.

Test modules import the session fixture by name (no conftest)::

    from tests.support.gcs import gcs_emulator  # noqa: F401  (a fixture, used by name)

The helpers talk to the emulator with plain `requests`, behind the storage's back. `Traffic` records
what a storage really sent (a `requests` response hook on its session: observed, not mocked).
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from config import StorageConfig, TransferTuning
from tests.support.ports import free_port
from tests.support.servers import start_process
from worker.storage.gcs.storage import GCSStorage

REPO = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
# 5 MiB = 20 × 256 KiB chunks, and the same threshold, so that ~12 MiB is already three chunks (the
# emulator rewrites the whole upload on every chunk: keep objects small, chunks few).
TEST_TUNING = TransferTuning.model_validate(
    {"part_size": 5 * MiB, "multipart_threshold": 5 * MiB, "connect_timeout": "1s", "read_timeout": "30s"}
)


def start_gcs_emulator(*, stock_preconditions: bool = False) -> tuple[str, Callable[[], None]]:
    """Start ``gcp-storage-emulator start --host 127.0.0.1 --port <free> --in-memory`` (with session
    cancelling and ``ifGenerationMatch=0`` added: `tests.support.gcs_emulator_main`; the latter not
    with `stock_preconditions`); return its URL and a stop function."""
    port = free_port()
    command = [sys.executable, "-m", "tests.support.gcs_emulator_main", "start", "--host", "127.0.0.1",
               "--port", str(port), "--in-memory", "--quiet"]  # fmt: skip
    command += ["--stock-preconditions"] if stock_preconditions else []
    return f"http://127.0.0.1:{port}", start_process(command, port, cwd=REPO)


def create_bucket(endpoint: str, name: str | None = None) -> str:
    """Create a bucket (a fresh unique name by default) and return its name."""
    bucket = name or f"test-{uuid.uuid4().hex[:20]}"
    response = requests.post(f"{endpoint}/storage/v1/b", params={"project": "test"}, json={"name": bucket}, timeout=10)
    response.raise_for_status()
    return bucket


def list_objects(endpoint: str, bucket: str) -> list[str]:
    """Every live object's full name in `bucket`, sorted."""
    response = requests.get(f"{endpoint}/storage/v1/b/{quote(bucket, safe='')}/o", timeout=10)
    response.raise_for_status()
    return sorted(item["name"] for item in response.json().get("items") or [])


def object_resource(endpoint: str, bucket: str, name: str) -> dict[str, Any] | None:
    """The object's JSON resource, or None when there is none."""
    url = f"{endpoint}/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"
    response = requests.get(url, timeout=10)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return dict(response.json())


def session_open(session_uri: str) -> bool:
    """Whether a resumable upload session still accepts bytes (a status query answers 308)."""
    response = requests.put(session_uri, headers={"Content-Range": "bytes */*"}, timeout=10)
    return response.status_code == 308


@dataclass
class Traffic:
    """What a storage sent through its session: every (method, URL, headers with lower-case names),
    the start of each body (`bodies`, in the same order), and the resumable sessions it opened."""

    sent: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)

    def record(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        request = response.request
        self.sent.append(
            (str(request.method), str(request.url), {k.lower(): str(v) for k, v in request.headers.items()})
        )
        body = request.body or b""
        self.bodies.append((body.encode() if isinstance(body, str) else bytes(body))[:65536])
        if request.method == "POST" and "uploadType=resumable" in str(request.url) and "Location" in response.headers:
            self.sessions.append(response.headers["Location"])

    def chunks(self) -> list[str]:
        """The Content-Range of every chunk PUT to a resumable session."""
        return [
            headers["content-range"]
            for method, _, headers in self.sent
            if method == "PUT" and "content-range" in headers
        ]

    def open_sessions(self) -> list[str]:
        """The object names of the sessions that still accept bytes (none after commit or abort)."""
        return [parse_qs(urlsplit(uri).query).get("name", ["?"])[0] for uri in self.sessions if session_open(uri)]


def watch(storage: GCSStorage) -> Traffic:
    """Start recording what `storage` sends."""
    traffic = Traffic()
    storage.session.hooks["response"].append(traffic.record)
    return traffic


def gcs_config(
    endpoint: str | None, bucket: str, prefix: str = "", name: str = "gcs-test", **gcs: Any
) -> StorageConfig:
    """A ``[[storages]]`` entry for `bucket` (``gcs_endpoint_url`` = `endpoint` when given)."""
    extra = {"gcs_endpoint_url": endpoint} if endpoint else {}
    return StorageConfig.model_validate(
        {"name": name, "storage_type": "gcs", "bucket": bucket, "path": prefix, **extra, **gcs}
    )


def gcs_storage(
    endpoint: str, bucket: str, prefix: str = "", *, tuning: TransferTuning = TEST_TUNING, **gcs: Any
) -> GCSStorage:
    """A GCSStorage on the emulator, built the way the service builds it (`from_config`)."""
    return GCSStorage.from_config(gcs_config(endpoint, bucket, prefix, **gcs), tuning)


def service_account_json(token_uri: str, project: str = "test-project") -> tuple[str, str]:
    """A service-account JSON (a fresh RSA key) whose tokens come from `token_uri`; and its private key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": uuid.uuid4().hex,
        "private_key": private_key,
        "client_email": f"archiver@{project}.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": token_uri,
    }
    return json.dumps(info), private_key


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """The URL of one gcp-storage-emulator shared by the whole test session."""
    url, stop = start_gcs_emulator()
    try:
        yield url
    finally:
        stop()
