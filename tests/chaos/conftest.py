"""Crash-test fixtures: the archiver's processes in process groups of their own (to kill or freeze
one whole worker), a throttled CDN, short leases, and the ledger read straight from Redis."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import redis

from tests.e2e.conftest import FAST, Archiver, archiver, archiver_env, sha256  # noqa: F401 - `archiver`: a fixture
from tests.fakestream.server import FakeStream, StoredFile
from tests.support.chaos import SlowProxy, end_group, kill_group, signal_group, start_in_group
from worker.ledger.store import Ledger

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MiB = 1024 * 1024
PREFIX = "recordings/"  # the path of `s3_storage`
# Short leases so that a dead or frozen worker is replaced within seconds; one part in flight so that
# a transfer is well under way, and still unfinished, when a test strikes.
CHAOS = {
    **FAST,
    "sweep_every": "0.3s",
    "redispatch_after": "2s",
    "transfer_lease": "4s",
    "transfer": {"part_size": "5MiB", "multipart_threshold": "5MiB", "parts_in_flight": 1,
                 "connect_timeout": "2s", "read_timeout": "10s"},
}


class ChaosArchiver(Archiver):
    """The archiver's processes, each leading a process group; the ledger at hand."""

    def __init__(self, env: dict[str, str], log_dir: Path, redis_url: str) -> None:
        super().__init__(env, log_dir)
        self.redis_url = redis_url
        self._ledger: Ledger | None = None

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        process = start_in_group(list(args), self.env, self.log_dir / f"{name}.log", self.log_dir)
        self.running[name] = process
        return process

    def stop(self, name: str, sig: int = 0) -> None:
        """Stop `name`'s whole group (however it was left: running, frozen, half killed)."""
        process = self.running.pop(name, None)
        if process is not None:
            end_group(process)

    def stop_all(self) -> None:
        """Every group at once (one by one, each idle Celery worker's shutdown adds up)."""
        processes = list(self.running.values())
        self.running.clear()
        for process in processes:
            signal_group(process, signal.SIGCONT)
            signal_group(process, signal.SIGTERM)
        for process in processes:
            end_group(process)

    def kill(self, name: str) -> None:
        """SIGKILL the whole group of `name`: the Celery worker and its pool children die at once."""
        kill_group(self.running[name])

    def freeze(self, name: str) -> None:
        """SIGSTOP the whole group of `name`: alive, silent, holding whatever it held."""
        signal_group(self.running[name], signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        signal_group(self.running[name], signal.SIGCONT)

    def log_of(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger(redis.Redis.from_url(self.redis_url, decode_responses=True))
        return self._ledger

    def close(self) -> None:
        self.stop_all()
        if self._ledger is not None:
            self._ledger.redis.close()


@pytest.fixture
def chaos_archiver(tmp_path: Path, redis_url: str, fake: FakeStream) -> Iterator[Callable[..., ChaosArchiver]]:
    """chaos_archiver(storages, proxy=None, redis_url=None, **top_level) → ChaosArchiver (nothing started).
    With `proxy`, downloads through it are allowed too."""
    made: list[ChaosArchiver] = []

    def make(storages: list[dict[str, Any]], proxy: SlowProxy | None = None, redis_url: str = redis_url,
             **top: Any) -> ChaosArchiver:
        hosts = [fake.cdn_host] + ([proxy.host] if proxy is not None else [])
        env = archiver_env(tmp_path / f"archiver-{len(made)}.toml", fake, redis_url, storages,
                           **{"download_hosts": hosts, **CHAOS, **top})
        made.append(ChaosArchiver(env, tmp_path / f"run-{len(made)}", redis_url))
        return made[-1]

    yield make
    for processes in made:
        processes.close()


@pytest.fixture
def slow_cdn(fake: FakeStream) -> Iterator[Callable[[int], SlowProxy]]:
    """slow_cdn(bytes_per_second) → a SlowProxy in front of the fake CDN, closed after the test."""
    proxies: list[SlowProxy] = []

    def make(rate: int) -> SlowProxy:
        proxies.append(SlowProxy(fake.cdn_host, rate))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()


@pytest.fixture
def s3(moto_client: S3Client) -> S3Client:
    """The session's client on moto_server (by the name these tests give it)."""
    return moto_client


def pending_uploads(s3: S3Client, bucket_name: str) -> list[str]:
    """The keys of the bucket's multipart uploads that were neither completed nor aborted."""
    return [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket_name).get("Uploads", [])]


def is_manifest(key: str) -> bool:
    """A session's manifest (the archiver's own object, rewritten as files arrive), not a data file:
    the default `manifest_template` names it ``manifest_<session_id>.json``."""
    name = key.rsplit("/", 1)[-1]
    return name.startswith("manifest_") and name.endswith(".json")


def stored_keys(s3: S3Client, bucket_name: str) -> list[str]:
    """The data files in the bucket (manifests aside): each must be there exactly once."""
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket_name).get("Contents", [])
                  if not is_manifest(o["Key"]))


def stored_sha256(s3: S3Client, bucket_name: str, key: str) -> str:
    """The SHA-256 of the object the archiver stored under `key` (a ledger key, without PREFIX)."""
    return sha256(s3.get_object(Bucket=bucket_name, Key=PREFIX + key)["Body"].read())


def deliver_slowly(fake: FakeStream, url: str, file: StoredFile, proxy: SlowProxy) -> httpx.Response:
    """Deliver `file`'s ready event with its URL pointing at the slow proxy."""
    return fake.deliver(url, file, url=proxy.url_for(fake.signed_url(file)))


BASE, CAP = 0.3, 2.0  # retry_backoff, retry_backoff_max (seconds) of `service`
BACKOFF = {"retry_backoff": f"{BASE}s", "retry_backoff_max": f"{CAP}s"}


@pytest.fixture
def service(archiver: Callable[..., Archiver]) -> Callable[..., Archiver]:  # noqa: F811 - the fixture
    """service(storages, **top_level) → the archiver's web, worker and scheduler, started, with the
    fast e2e timings, short backoff and call routing off."""

    def start(storages: list[dict[str, Any]], **top: Any) -> Archiver:
        processes = archiver(storages, **{**BACKOFF, "call_storage_key": "", **top})
        processes.start_all()
        return processes

    return start
