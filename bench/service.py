"""The whole service for cases 3 and 4: a fresh redis-server, a fresh fake Stream, and the
archiver's real processes (`archiver web`, workers, scheduler) configured for them.

Webhook bodies are built and signed the way Stream does (tests/fakestream/events.py) before any
clock starts, so signing never counts against the receiver.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

import tests.fakestream.server as fake_server
from tests.fakestream.events import webhook_request
from tests.fakestream.server import FakeStream, start_fake_stream
from tests.support.processes import ArchiverProcesses
from tests.support.redis import RedisServer
from tests.support.settings import write_config

API_KEY, API_SECRET = "bench-key", "bench-secret-0123456789-0123456789-0123456789"
PREFIX = "archiver:"

# The fake hashes a Path's content on every add_recording; the bench adds one file many times.
fake_server.digest_content = functools.cache(fake_server.digest_content)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Delivery:
    """One signed webhook, ready to POST."""

    body: bytes
    headers: dict[str, str]


@dataclass
class Service:
    """A running round: Redis, the fake Stream and the archiver's processes (started on demand)."""

    redis_server: RedisServer
    fake: FakeStream
    processes: ArchiverProcesses

    @property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_server.url)

    def pid(self, name: str) -> int:
        return self.processes.running[name].pid

    def deliveries(self, count: int, content: bytes | Path, prefix: str) -> list[Delivery]:
        """`count` new recordings in the fake, each with its signed recording_ready webhook."""
        made = []
        for i in range(count):
            stored = self.fake.add_recording(f"default:{prefix}-{i:06d}", content)
            body, headers = webhook_request(self.fake.event_for(stored), api_key=API_KEY, api_secret=API_SECRET)
            made.append(Delivery(body, headers))
        return made


def archiver_config(path: Path, fake: FakeStream, storage: dict[str, Any], top: dict[str, Any]) -> Path:
    """Defaults everywhere (a production-like service) but `top`; the fake's CDN allowed as a download host."""
    return write_config(path, {"default_storage": storage["name"], "download_hosts": [fake.cdn_host], **top,
                               "storages": [storage]})


@contextmanager
def service(workdir: Path, storage: dict[str, Any], top: dict[str, Any] | None = None) -> Iterator[Service]:
    """Start Redis and the fake; the archiver's processes are started by the caller and all stopped here."""
    workdir.mkdir(parents=True, exist_ok=True)
    redis_server = RedisServer(workdir / "redis").start()
    fake = start_fake_stream(API_KEY, API_SECRET)
    config = archiver_config(workdir / "archiver.toml", fake, storage, top or {})
    env = {"STREAM_API_KEY": API_KEY, "STREAM_API_SECRET": API_SECRET, "STREAM_BASE_URL": fake.base_url,
           "REDIS_URL": redis_server.url, "ARCHIVER_CONFIG": str(config)}
    processes = ArchiverProcesses({**os.environ, **env}, workdir / "logs")
    try:
        yield Service(redis_server, fake, processes)
    finally:
        processes.stop_all()
        fake.stop()
        redis_server.stop()


def ledger_states(client: redis.Redis) -> dict[str, int]:
    """Transfers per state (every non-empty ``state:*`` index)."""
    found = {}
    for key in client.scan_iter(match=f"{PREFIX}state:*", count=1000):
        name = key.decode() if isinstance(key, bytes) else str(key)
        found[name.removeprefix(f"{PREFIX}state:")] = int(client.zcard(key))
    return {k: v for k, v in found.items() if v}


def count_files(client: redis.Redis) -> int:
    """Files in the ledger (``file:<id>`` hashes; their ``:transfers`` sets excluded)."""
    return sum(1 for key in client.scan_iter(match=f"{PREFIX}file:*", count=5000)
               if not key.endswith(b":transfers"))
