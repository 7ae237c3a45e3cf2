"""The benchmark's destinations: a real server each (s3rver, Azurite, the GCS emulator) or a local
directory, with what every contender needs to write to it.

For one destination: the archiver's storage table, rclone's remote (set through ``RCLONE_CONFIG_*``
environment variables, so no config file), and a *plain streaming copy*: the origin's body sent
on as one request in 1 MiB reads, no hashing, no parts, no retries. That is the raw limit of the
server (and of Python's socket loop) that the archiver is compared with.
"""

from __future__ import annotations

import http.client
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

from tests.support.azurite import ACCOUNT, account_sas, create_container, start_azurite
from tests.support.gcs import create_bucket as create_gcs_bucket
from tests.support.gcs import start_gcs_emulator
from tests.support.ports import free_port
from tests.support.servers import start_process

ROOT = Path(__file__).resolve().parents[1]
S3RVER = ROOT / ".tools" / "node_modules" / ".bin" / "s3rver"
READ = 1 << 20


def _open_source(url: str) -> http.client.HTTPResponse:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=60)
    connection.request("GET", f"{parts.path}?{parts.query}")
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"origin answered {response.status}")
    return response


def _stream_put(method: str, url: str, headers: dict[str, str], source_url: str) -> None:
    """The plain streaming copy: the origin's body into one request, 1 MiB at a time."""
    source = _open_source(source_url)
    size = int(source.headers["Content-Length"])
    parts = urlsplit(url)
    target = http.client.HTTPConnection(parts.netloc, timeout=120)
    target.putrequest(method, f"{parts.path}?{parts.query}" if parts.query else parts.path)
    for name, value in {**headers, "Content-Length": str(size)}.items():
        target.putheader(name, value)
    target.endheaders()
    while chunk := source.read(READ):
        target.send(chunk)
    answer = target.getresponse()
    answer.read()
    if answer.status >= 300:
        raise RuntimeError(f"{method} {parts.path} answered {answer.status}")


class Destination(ABC):
    """One place to write to, started by `start` and stopped by `stop`."""

    name: str
    rclone_type = ""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._stop: Callable[[], None] = lambda: None

    @abstractmethod
    def start(self) -> None: ...

    def stop(self) -> None:
        self._stop()

    @abstractmethod
    def storage(self) -> dict[str, Any]:
        """The archiver's ``[[storages]]`` table for it."""

    @abstractmethod
    def plain_copy(self, source_url: str, key: str) -> None:
        """Stream `source_url` into `key` with no processing at all."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key` (disk and RAM are finite: each run's object goes once measured)."""

    @abstractmethod
    def size_of(self, key: str) -> int:
        """The stored object's size (every contender's result is checked)."""

    def tuning(self) -> dict[str, Any]:
        """The archiver's ``[transfer]`` settings for this destination (none: the defaults)."""
        return {}

    def rclone(self) -> tuple[dict[str, str], str] | None:
        """rclone's environment and the remote path prefix, or None where rclone cannot write."""
        return None


class LocalDisk(Destination):
    name = "local disk"

    def start(self) -> None:
        self.root = self.workdir / "archive"
        self.root.mkdir(parents=True, exist_ok=True)

    def storage(self) -> dict[str, Any]:
        return {"name": "disk", "storage_type": "local", "bucket": str(self.root)}

    def plain_copy(self, source_url: str, key: str) -> None:
        source = _open_source(source_url)
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            shutil.copyfileobj(source, out, READ)

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def size_of(self, key: str) -> int:
        return (self.root / key).stat().st_size

    def rclone(self) -> tuple[dict[str, str], str]:
        return {}, f"{self.root}/"


class S3rver(Destination):
    """s3rver over plain HTTP: the fastest S3 server here, and disk-backed (4 GiB objects fit)."""

    name = "s3rver"
    bucket = "bench"

    def start(self) -> None:
        if not S3RVER.exists():
            raise RuntimeError(f"s3rver is not installed at {S3RVER}: run bench/run, it installs it")
        port = free_port()
        data = self.workdir / "s3rver"
        data.mkdir(parents=True, exist_ok=True)
        self.endpoint = f"http://127.0.0.1:{port}"
        self._stop = start_process([str(S3RVER), "-d", str(data), "-a", "127.0.0.1", "-p", str(port), "--silent",
                                    "--no-vhost-buckets", "--configure-bucket", self.bucket], port)
        self.client = boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="S3RVER",
            aws_secret_access_key="S3RVER",  # noqa: S106 - s3rver's fixed development credentials
            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
        )

    def storage(self) -> dict[str, Any]:
        return {"name": "s3", "storage_type": "s3", "bucket": self.bucket,
                "aws_s3": {"s3_region": "us-east-1", "s3_api_key": "S3RVER", "s3_secret": "S3RVER",
                           "s3_custom_endpoint_url": self.endpoint}}

    def plain_copy(self, source_url: str, key: str) -> None:
        url = self.client.generate_presigned_url("put_object", Params={"Bucket": self.bucket, "Key": key})
        _stream_put("PUT", url, {}, source_url)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def size_of(self, key: str) -> int:
        return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])

    def rclone(self) -> tuple[dict[str, str], str]:
        env = {"RCLONE_CONFIG_DEST_TYPE": "s3", "RCLONE_CONFIG_DEST_PROVIDER": "Other",
               "RCLONE_CONFIG_DEST_ENDPOINT": self.endpoint, "RCLONE_CONFIG_DEST_ACCESS_KEY_ID": "S3RVER",
               "RCLONE_CONFIG_DEST_SECRET_ACCESS_KEY": "S3RVER", "RCLONE_CONFIG_DEST_FORCE_PATH_STYLE": "true"}
        return env, f"dest:{self.bucket}/"


class AzuriteBlob(Destination):
    name = "Azurite"
    container = "bench"

    def start(self) -> None:
        self.endpoint, self._stop = start_azurite(self.workdir)
        create_container(self.endpoint, self.container)
        self.sas = account_sas(hours=6)

    def storage(self) -> dict[str, Any]:
        from tests.support.azurite import ACCOUNT_KEY  # noqa: PLC0415

        return {"name": "abs", "storage_type": "abs", "bucket": self.container,
                "azure_blob": {"abs_account_name": ACCOUNT, "abs_account_key": ACCOUNT_KEY,
                               "abs_endpoint_url": self.endpoint}}

    def _url(self, key: str) -> str:
        return f"{self.endpoint}/{self.container}/{key}?{self.sas}"

    def plain_copy(self, source_url: str, key: str) -> None:
        _stream_put("PUT", self._url(key), {"x-ms-blob-type": "BlockBlob", "x-ms-version": "2021-12-02"},
                    source_url)

    def delete(self, key: str) -> None:
        from tests.support.azurite import container_client  # noqa: PLC0415

        container_client(self.endpoint, self.container).delete_blob(key)

    def size_of(self, key: str) -> int:
        from tests.support.azurite import container_client  # noqa: PLC0415

        return int(container_client(self.endpoint, self.container).get_blob_client(key).get_blob_properties().size)

    def rclone(self) -> tuple[dict[str, str], str]:
        env = {"RCLONE_CONFIG_DEST_TYPE": "azureblob", "RCLONE_CONFIG_DEST_SAS_URL": f"{self.endpoint}?{self.sas}"}
        return env, f"dest:{self.container}/"


class _Forward:
    """A response body as the SDK's upload wants a file: read, tell, and seek where it already is."""

    def __init__(self, body: http.client.HTTPResponse) -> None:
        self._body, self._at = body, 0

    def read(self, size: int = -1) -> bytes:
        data = self._body.read(size if size >= 0 else None)
        self._at += len(data)
        return data

    def tell(self) -> int:
        return self._at

    def seek(self, offset: int, whence: int = 0) -> int:
        if (whence, offset) not in ((0, self._at), (1, 0)):
            raise OSError("a streamed body can only stay where it is")
        return self._at


class GcsEmulator(Destination):
    """The GCS emulator; rclone cannot upload to it, so its peer is google-cloud-storage's own
    resumable upload (`sdk_copy`)."""

    name = "GCS emulator"
    # Its resumable path rewrites the upload so far on every chunk (server CPU quadratic in the
    # size): large chunks, the same for the archiver and the SDK. Memory: one chunk sending, one filling.
    chunk_mib = 16

    def tuning(self) -> dict[str, Any]:
        return {"part_size": f"{self.chunk_mib}MiB"}

    def start(self) -> None:
        self.endpoint, self._stop = start_gcs_emulator()
        self.bucket = create_gcs_bucket(self.endpoint, "bench")

    def storage(self) -> dict[str, Any]:
        return {"name": "gcs", "storage_type": "gcs", "bucket": self.bucket,
                "gcs_endpoint_url": self.endpoint, "gcs_project": "bench"}

    def plain_copy(self, source_url: str, key: str) -> None:
        url = f"{self.endpoint}/upload/storage/v1/b/{self.bucket}/o?uploadType=media&name={key}"
        _stream_put("POST", url, {"Content-Type": "application/octet-stream"}, source_url)

    def _blob(self, key: str) -> Any:
        from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415
        from google.cloud import storage  # noqa: PLC0415

        client = storage.Client(project="bench", credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": self.endpoint})
        return client.bucket(self.bucket).blob(key)

    def sdk_copy(self, source_url: str, key: str, chunk_mib: int) -> None:
        """google-cloud-storage's resumable upload of the streamed body."""
        source = _open_source(source_url)
        size = int(source.headers["Content-Length"])
        blob = self._blob(key)
        blob.chunk_size = chunk_mib << 20
        blob.upload_from_file(_Forward(source), size=size, checksum=None)

    def delete(self, key: str) -> None:
        self._blob(key).delete()

    def size_of(self, key: str) -> int:
        blob = self._blob(key)
        blob.reload()
        return int(blob.size)


def rclone_env(remote: dict[str, str]) -> dict[str, str]:
    """rclone's environment: its remote, and AWS_CA_BUNDLE unset (rclone 1.60 refuses to start with it)."""
    return {**{k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}, **remote}


def make_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="archiver-bench-"))


@contextmanager
def started(destination: Destination) -> Iterator[Destination]:
    """`destination` started (its working directory made) for the block, stopped after it."""
    destination.workdir.mkdir(parents=True, exist_ok=True)
    destination.start()
    try:
        yield destination
    finally:
        destination.stop()
