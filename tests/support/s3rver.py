"""A real s3rver (an S3 server on disk, from npm) on a free loopback port, for what moto does not check.

moto serves presigned URLs without checking their expiry (nor their signature); s3rver 3.7.1 refuses
a SigV4 presigned URL once ``X-Amz-Date`` + ``X-Amz-Expires`` has passed (403 ``AccessDenied``,
"Request has expired"), and an unknown access key. It does not check a SigV4 signature itself (its
source: "Signature version 4 calculation is unimplemented"). Installed into ``.tools/`` by
``scripts/test`` (scripts/bootstrap.sh ``ensure_s3rver``). Test modules import the fixture by name::

    from tests.support.s3rver import s3rver  # noqa: F401 - session fixture, used by name
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import StorageConfig
from tests.support.moto import REGION, TEST_TUNING, s3_client
from tests.support.ports import free_port
from tests.support.servers import start_process
from worker.storage.s3.storage import S3Storage

ROOT = Path(__file__).resolve().parents[2]
S3RVER = ROOT / ".tools" / "node_modules" / ".bin" / "s3rver"
KEY = SECRET = "S3RVER"  # s3rver's fixed development credentials


@pytest.fixture(scope="session")
def s3rver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The endpoint URL (``http://127.0.0.1:PORT``) of one s3rver per session, over plain HTTP."""
    if not S3RVER.exists():
        pytest.fail(f"s3rver is not installed at {S3RVER}: run scripts/test once, it installs it")
    port = free_port()
    data = tmp_path_factory.mktemp("s3rver")
    stop = start_process([str(S3RVER), "-d", str(data), "-a", "127.0.0.1", "-p", str(port), "--silent"], port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop()


def s3rver_storage(endpoint: str, prefix: str = "") -> S3Storage:
    """An S3Storage in a fresh bucket of s3rver, built the way the service builds it (`from_config`)."""
    bucket = f"test-{uuid.uuid4().hex[:20]}"
    client = s3_client(endpoint, KEY, SECRET)
    client.create_bucket(Bucket=bucket)
    client.close()
    options = {"s3_region": REGION, "s3_api_key": KEY, "s3_secret": SECRET, "s3_custom_endpoint_url": endpoint}
    config = StorageConfig.model_validate(
        {"name": "s3rver", "storage_type": "s3", "bucket": bucket, "path": prefix, "aws_s3": options})
    return S3Storage.from_config(config, TEST_TUNING)
