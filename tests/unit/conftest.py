"""Unit-test fixtures shared across packages: an in-process Runtime on the fake Stream, and the webhook receiver
served over real HTTP. Both are factories where tests need variants; `runtime` and `receiver` are their
plain forms."""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from config import Settings
from tests.conftest import API_KEY, API_SECRET
from tests.fakestream.server import FakeStream
from tests.support.webserver import serve_in_thread
from worker.edge.web import paths
from worker.edge.web.app import create_app
from worker.intake.webhook import sign
from worker.ledger.store import Ledger
from worker.runtime import Runtime


@pytest.fixture
def make_runtime(make_settings: Any, fake: FakeStream, tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    """make_runtime(*storages, env=None, **top_level) → a Runtime on the fake Stream's API and CDN, closed after
    the test. A storage given by name is a local one in tmp_path/<name>; a dict is a storage table as written;
    none means one local storage `disk`. The first is the default storage, the fake CDN the download host
    (both unless `top_level` says otherwise). The Stream client's own retries take no real time."""
    made: list[Runtime] = []

    def build(*storages: str | dict[str, Any], env: Mapping[str, str] | None = None, **archive: Any) -> Runtime:
        tables = [s if isinstance(s, dict) else {"name": s, "storage_type": "local", "bucket": str(tmp_path / s)}
                  for s in storages or ("disk",)]
        archive = {"download_hosts": [fake.cdn_host], "default_storage": tables[0]["name"], **archive}
        settings = make_settings(env={"STREAM_BASE_URL": fake.base_url, **(env or {})}, storages=tables, **archive)
        runtime = Runtime.from_settings(settings)
        runtime.stream._sleep = lambda _: None
        made.append(runtime)
        return runtime

    yield build
    for runtime in made:
        runtime.close()


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime]) -> Runtime:
    """A Runtime with one local storage `disk` (a test module overrides this fixture for other storages)."""
    return make_runtime()


class Receiver:
    """The webhook receiver (worker/edge/web/app.py) served over real HTTP on a real ledger; what it queued is kept."""

    def __init__(self, base: str, queued: list[str], ledger: Ledger) -> None:
        self.base, self.queued, self.ledger = base, queued, ledger

    @property
    def url(self) -> str:
        return f"{self.base}{paths.WEBHOOK}"

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    def post(self, body: bytes, *, secret: str = API_SECRET, key: str = API_KEY, compress: bool = False,
             **headers: str) -> httpx.Response:
        """Deliver `body` signed as Stream signs it (with `secret`), gzipped if `compress`; `headers` added."""
        sent = {"X-API-KEY": key, "X-SIGNATURE": sign(body, secret), "Content-Type": "application/json",
                "X-WEBHOOK-ID": "wh-1", "X-WEBHOOK-ATTEMPT": "1"} | headers
        if compress:
            sent["Content-Encoding"] = "gzip"
            body = gzip.compress(body)
        return self.send(body, sent)

    def send(self, body: bytes, headers: Mapping[str, Any]) -> httpx.Response:
        """POST `body` with exactly `headers`: no signature added."""
        return httpx.post(self.url, content=body, headers=headers, timeout=10)

    def recorded(self) -> int:
        """How many ledger keys there are, the webhook counters aside."""
        return len(ledger_keys(self.ledger))


def ledger_keys(ledger: Ledger) -> list[str]:
    """Every key but the webhook counters (``archiver:stats:``), which count refusals too."""
    return [k for k in ledger.redis.keys() if not str(k).startswith("archiver:stats:")]


def serve(settings: Settings, ledger: Ledger) -> tuple[AbstractContextManager[str], list[str]]:
    """(the receiver for `settings` and `ledger`, to serve in a `with` block that gives its base URL; the list
    of the ids it queued)."""
    queued: list[str] = []
    return serve_in_thread(create_app(settings, ledger, queued.extend)), queued


@pytest.fixture
def make_receiver(make_settings: Any, ledger: Ledger) -> Iterator[Callable[..., Receiver]]:
    """make_receiver(env=None, **top_level) → a Receiver on the test's ledger, stopped after the
    test. Routes are known at intake (call_storage_key="": no call lookup) unless `top_level` says otherwise."""
    with ExitStack() as servers:

        def build(env: Mapping[str, str] | None = None, **archive: Any) -> Receiver:
            server, queued = serve(make_settings(env=dict(env or {}), **{"call_storage_key": "", **archive}), ledger)
            return Receiver(servers.enter_context(server), queued, ledger)

        yield build


@pytest.fixture
def receiver(make_receiver: Callable[..., Receiver]) -> Receiver:
    return make_receiver()
