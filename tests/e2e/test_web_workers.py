"""`archiver web --workers N`: several receiver processes on one port, each recording and queuing."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.conftest import Archiver, local_storage
from tests.fakestream.server import FakeStream
from tests.support.ports import free_port, wait_for_port

pytestmark = pytest.mark.e2e


def test_two_receiver_processes_record_and_queue_every_delivery(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path
) -> None:
    service = archiver([local_storage(tmp_path / "disk")], call_storage_key="")
    service.web_port = free_port()
    web = service.start("web", "web", "--host", "127.0.0.1", "--port", str(service.web_port), "--workers", "2")
    wait_for_port(service.web_port, timeout=30)
    files = [fake.add_recording(f"default:multi-{i}", os.urandom(1000 + i)) for i in range(20)]
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda f: fake.deliver(service.webhook_url, f).status_code, files))
    assert statuses == [202] * len(files)
    service.start_worker()
    archived = service.wait_for_states(len(files))
    assert sorted(t["bytes"] for t in archived) == sorted(f.size for f in files)
    assert web.poll() is None, "the receivers still run"
