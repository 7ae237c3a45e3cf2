"""The whole service on a Sentinel-managed Redis: broker and ledger both through sentinel:// URLs.

Real processes: a Redis master, its replica and a Sentinel; `archiver web`, `archiver worker`
(Celery's Redis transport finding the master through the Sentinel), `archiver scheduler`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.e2e.conftest import Archiver, local_storage
from tests.fakestream.server import FakeStream
from tests.support.sentinel import SentinelSetup

pytestmark = pytest.mark.e2e


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[SentinelSetup]:
    with SentinelSetup(tmp_path / "ha") as setup:
        yield setup


def test_a_recording_is_archived_with_broker_and_ledger_behind_sentinel(
    sentinel: SentinelSetup, archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path, redis_url: str
) -> None:
    """(The Sentinel is set up first so that it stops last, after the archiver's processes.)"""
    root = tmp_path / "archive"
    service = archiver([local_storage(root)])
    url_list = f"sentinel://127.0.0.1:1;{sentinel.url}"  # a Sentinel that is down is skipped
    service.env.update({"REDIS_URL": url_list, "ARCHIVER_BROKER_URL": url_list,
                        "REDIS_SENTINEL_MASTER": sentinel.master_name})
    webhook = service.start_all()
    recording = fake.add_recording("default:ha-1", os.urandom(2 * 1024 * 1024 + 5))
    assert fake.deliver(webhook, recording).status_code == 202

    (entry,) = service.wait_for_states(1)
    assert (root / entry["key"]).read_bytes() == recording.read_bytes()
    with sentinel.master() as master:
        assert master.hget(f"archiver:transfer:{entry['id']}", "state") == "archived"
        assert master.exists("_kombu.binding.archiver.transfers"), "Celery's queue lives on the master too"
    with redis.Redis.from_url(redis_url) as plain:
        assert plain.dbsize() == 0, "nothing went to the single Redis of REDIS_URL's default"
    assert '"redis_config_warning"' not in service.logs(), "the master runs with AOF and noeviction"
