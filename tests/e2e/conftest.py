"""End-to-end fixtures: the fake Stream, moto_server, and the archiver's real processes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from config import load_settings
from tests.conftest import API_KEY, API_SECRET
from tests.fakestream.server import FakeStream
from tests.support.hooks import Hook, HookReceiver
from tests.support.moto import ACCESS_KEY, REGION, SECRET_KEY
from tests.support.processes import ArchiverProcesses, wait_until
from tests.support.settings import write_config
from worker.ledger.connection import connect_env
from worker.ledger.store import Ledger
from worker.ledger.unrouted import listed_rows

FAST = {
    "sweep_every": "0.5s",
    "redispatch_after": "4s",
    "transfer_lease": "6s",
    "retry_backoff": "0.3s",
    "retry_backoff_max": "1s",
    "transfer": {"part_size": "5MiB", "multipart_threshold": "5MiB", "connect_timeout": "2s",
                 "read_timeout": "10s"},
}


def s3_storage(endpoint: str, bucket: str, name: str = "s3", path: str = "recordings/") -> dict[str, Any]:
    return {"name": name, "storage_type": "s3", "bucket": bucket, "path": path,
            "aws_s3": {"s3_region": REGION, "s3_api_key": ACCESS_KEY, "s3_secret": SECRET_KEY,
                       "s3_custom_endpoint_url": endpoint}}


def local_storage(root: Path, name: str = "disk") -> dict[str, Any]:
    return {"name": name, "storage_type": "local", "bucket": str(root), "path": ""}


class Archiver(ArchiverProcesses):
    """The archiver's processes plus ways to read its ledger through its own CLI."""

    def start_all(self) -> str:
        """Web receiver, one worker and the scheduler, started together (as Compose starts them) and
        returned once the receiver listens and the scheduler's first reconciliation is done; returns
        the webhook URL."""
        url = self.start_web(wait=False)
        self.start_worker()
        self.start_scheduler(wait=False)
        self.wait_for_web()
        self.wait_for_scheduler()
        return url

    def transfers(self, state: str | None = None) -> list[dict[str, Any]]:
        args = ["transfers", "list", "--json"] + (["--state", state] if state else [])
        result = self.cli(*args)
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def wait_for_states(self, count: int, state: str = "archived", timeout: float = 60.0) -> list[dict[str, Any]]:
        """The transfers in `state` (as `archiver transfers list --json` prints them) once there are
        `count`. Polled in this process with the rows that command lists (`listed_rows`) on the
        archiver's own Redis: a CLI run per poll would take a CPU-second from the processes under test."""
        ledger = Ledger(connect_env(load_settings(self.env).env, name="archiver-test"))
        try:
            def done() -> bool:
                return sum(1 for _ in listed_rows(ledger, state)) >= count

            try:
                wait_until(done, timeout=timeout, interval=0.1, message=f"{count} transfer(s) {state}")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\nledger: {self.transfers()}\nlogs:\n{self.logs()[-6000:]}") from None
        finally:
            ledger.redis.close()
        listed = self.transfers(state)
        assert len(listed) >= count, f"the ledger has {count} transfer(s) {state}, the CLI lists {listed}"
        return listed

    def notifications(self, *args: str) -> list[dict[str, Any]]:
        """The outbox as `archiver notifications list --json` shows it (`args`: its options)."""
        result = self.cli("notifications", "list", "--json", *args)
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def wait_for_delivered(self, hooks: HookReceiver, count: int, timeout: float = 30) -> list[Hook]:
        """The requests `hooks` answered 2xx once they carry `count` distinct event ids."""
        def done() -> bool:
            return len({h.event["id"] for h in hooks.delivered()}) >= count

        try:
            wait_until(done, timeout=timeout, interval=0.2, message=f"{count} notification(s) delivered")
        except AssertionError as exc:
            listed = self.cli("notifications", "list").stdout
            raise AssertionError(f"{exc}\n{listed}\n{self.logs()[-5000:]}") from None
        return hooks.delivered()


def archiver_env(path: Path, fake: FakeStream, redis_url: str, storages: list[dict[str, Any]],
                 **top: Any) -> dict[str, str]:
    """The environment of the archiver's processes: the fake Stream's key, secret and API, `redis_url`, and the
    configuration written to `path`: `storages` (the first the default), the fake CDN allowed, and `top`."""
    config = {"default_storage": storages[0]["name"], "download_hosts": [fake.cdn_host], **top, "storages": storages}
    return {"STREAM_API_KEY": API_KEY, "STREAM_API_SECRET": API_SECRET, "REDIS_URL": redis_url,
            "STREAM_BASE_URL": fake.base_url, "ARCHIVER_CONFIG": str(write_config(path, config))}


@pytest.fixture
def hooks() -> Iterator[HookReceiver]:
    """A real HTTP endpoint for `[[notify]]`, up (see tests.support.hooks)."""
    receiver = HookReceiver().up()
    yield receiver
    receiver.hanging.clear()
    receiver.down()


@pytest.fixture
def archiver(tmp_path: Path, redis_url: str, fake: FakeStream) -> Iterator[Callable[..., Archiver]]:
    """archiver(storages=[...], **top_level) → Archiver with a config written for it (nothing started)."""
    made: list[Archiver] = []

    def make(storages: list[dict[str, Any]], **top: Any) -> Archiver:
        env = archiver_env(tmp_path / "archiver.toml", fake, redis_url, storages, **{**FAST, **top})
        made.append(Archiver(env, tmp_path / "run"))
        return made[-1]

    yield make
    for processes in made:
        processes.stop_all()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
