"""A real ``moto_server`` process on a free loopback port, and small S3 helpers for tests.

The session fixture `moto_server` lives here so any conftest can re-export it::

    from tests.support.moto import moto_client, moto_server  # noqa: F401  (fixtures, used by name)
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config

from config import StorageConfig, TransferTuning
from tests.support.ports import free_port
from tests.support.servers import start_process
from worker.storage.s3.storage import S3Storage

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MOTO_SERVER = Path(sys.executable).parent / "moto_server"
# moto computes a full-object CRC32C with the `crc32c` package and silently falls back to CRC32 without
# it (moto/s3/utils.py `compute_checksum`). When that package is missing, moto_server runs with a
# stand-in module built on google-crc32c (a dependency of ours), so CRC32C values it reports are real.
_CRC32C_SHIM = """
import importlib.machinery, sys, types, google_crc32c
shim = types.ModuleType("crc32c")
shim.__spec__ = importlib.machinery.ModuleSpec("crc32c", None)
shim.crc32c = lambda data, value=0: google_crc32c.extend(value, bytes(data))
sys.modules["crc32c"] = shim
from moto.server import main
sys.exit(main())
"""
REGION = "us-east-1"
ACCESS_KEY = "AKIAMOTOTESTKEY00001"
SECRET_KEY = "moto-test-secret-do-not-print-0123456789"
MiB = 1024 * 1024
# moto's minimum part size, so that a ~12 MiB object is already a three-part upload.
TEST_TUNING = TransferTuning.model_validate(
    {"part_size": 5 * MiB, "multipart_threshold": 5 * MiB, "parts_in_flight": 2,
     "connect_timeout": "2s", "read_timeout": "30s"}
)  # fmt: skip


def moto_command() -> list[str]:
    """``moto_server``, or the same through a CRC32C stand-in when the `crc32c` package is missing."""
    if importlib.util.find_spec("crc32c") is not None:
        return [str(MOTO_SERVER)]
    return [sys.executable, "-c", _CRC32C_SHIM]


def start_moto_server() -> tuple[str, Callable[[], None]]:
    """Start ``moto_server -H 127.0.0.1 -p <free port>``; return its URL and a stop function."""
    port = free_port()
    stop = start_process([*moto_command(), "-H", "127.0.0.1", "-p", str(port)], port)
    return f"http://127.0.0.1:{port}", stop


def s3_client(endpoint_url: str, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> S3Client:
    """A plain boto3 client for moto (or another S3 server), to look behind a storage's back."""
    return boto3.session.Session().client(
        "s3",
        region_name=REGION,
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(s3={"addressing_style": "path"}),
    )


def create_bucket(client: S3Client, name: str | None = None, *, object_lock: bool = False) -> str:
    """Create a bucket (a fresh unique name by default; with `object_lock`, Object Lock enabled, which
    turns versioning on) and return its name."""
    bucket = name or f"test-{uuid.uuid4().hex[:20]}"
    client.create_bucket(Bucket=bucket, **({"ObjectLockEnabledForBucket": True} if object_lock else {}))
    return bucket


def s3_config(endpoint_url: str, bucket: str, prefix: str = "", name: str = "s3-test") -> StorageConfig:
    """A ``[[storages]]`` entry for `bucket` on moto, with the test credentials."""
    options = {"s3_region": REGION, "s3_api_key": ACCESS_KEY, "s3_secret": SECRET_KEY,
               "s3_custom_endpoint_url": endpoint_url}  # fmt: skip
    return StorageConfig.model_validate(
        {"name": name, "storage_type": "s3", "bucket": bucket, "path": prefix, "aws_s3": options}
    )


def s3_storage(endpoint_url: str, bucket: str, prefix: str = "", tuning: TransferTuning = TEST_TUNING,
               **options: Any) -> S3Storage:
    """An S3Storage on moto, built the way the service builds it (`from_config`); `options` are more
    ``[storages.aws_s3]`` keys."""
    config = s3_config(endpoint_url, bucket, prefix)
    if options:
        assert config.aws_s3 is not None
        aws = {**config.aws_s3.model_dump(), "s3_api_key": ACCESS_KEY, "s3_secret": SECRET_KEY, **options}
        config = StorageConfig.model_validate({**config.model_dump(), "aws_s3": aws})
    return S3Storage.from_config(config, tuning)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """The endpoint URL of one moto_server shared by the whole test session."""
    url, stop = start_moto_server()
    try:
        yield url
    finally:
        stop()


@pytest.fixture(scope="session")
def moto_client(moto_server: str) -> Iterator[S3Client]:
    """A plain boto3 client on the session's moto_server (thread-safe, shared)."""
    client = s3_client(moto_server)
    yield client
    client.close()
