"""Shared fixtures: a real redis-server for the session, settings written as real TOML files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis

from config import Settings, load_settings
from tests.fakestream.server import FakeStream, start_fake_stream
from tests.support.azurite import azurite  # noqa: F401 - session fixtures, used by name
from tests.support.chaos_report import chaos_report  # noqa: F401
from tests.support.gcs import gcs_emulator  # noqa: F401
from tests.support.moto import create_bucket, moto_client, moto_server  # noqa: F401
from tests.support.redis import RedisServer
from tests.support.settings import write_config
from worker.ledger.store import Ledger

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

API_KEY = "test-api-key"
API_SECRET = "test-api-secret-0123456789-abcdefghij"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The session's Redis, emptied for this test."""
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def ledger(redis_url: str) -> Iterator[Ledger]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield Ledger(client)
    client.close()


@pytest.fixture
def bucket(moto_client: S3Client) -> str:  # noqa: F811 - the fixture imported above
    """A new, empty bucket on the session's moto_server."""
    return create_bucket(moto_client)


@pytest.fixture
def fake() -> Iterator[FakeStream]:
    """A fake Stream (API, CDN, webhook sender) for this app's key and secret."""
    with start_fake_stream(API_KEY, API_SECRET) as stream:
        yield stream


@pytest.fixture
def make_settings(tmp_path: Path, redis_url: str) -> Any:
    """Build Settings from a real TOML file: make_settings(storages=[...], **top_level); environment
    variables beyond the Stream credentials and REDIS_URL go in `env`."""

    def build(env: dict[str, str] | None = None, **archive: Any) -> Settings:
        env = {"STREAM_API_KEY": API_KEY, "STREAM_API_SECRET": API_SECRET, "REDIS_URL": redis_url, **(env or {})}
        if archive:
            env["ARCHIVER_CONFIG"] = str(write_config(tmp_path / "archiver.toml", archive))
        return load_settings(env)

    return build
