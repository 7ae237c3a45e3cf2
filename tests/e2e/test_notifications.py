"""Signed notifications with the archiver's real processes and a real HTTP endpoint: one file.archived per
archived transfer, signed as the docs say; an endpoint down for a while gets every event afterwards, once per
id; a worker SIGKILLed in the middle of a delivery (the endpoint hangs) does not lose it: the same event id is
delivered after its lease."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import Archiver, local_storage
from tests.fakestream.server import FakeStream
from tests.support.hooks import HookReceiver
from tests.support.processes import wait_until

pytestmark = pytest.mark.e2e
SECRET = "whsec-e2e"


def notified(archiver: Callable[..., Archiver], tmp_path: Path, hooks: HookReceiver, *names: str) -> Archiver:
    storages = [local_storage(tmp_path / name, name) for name in names]
    return archiver(storages, default_storage=list(names), call_storage_key="",
                    notify=[{"url": hooks.url, "secret": SECRET, "events": ["file.archived", "file.failed"]}])


def test_each_archived_transfer_is_announced_signed_and_an_endpoint_down_gets_every_event_once(
        archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path, hooks: HookReceiver) -> None:
    service = notified(archiver, tmp_path, hooks, "disk1", "disk2")
    url = service.start_all()
    assert fake.deliver(url, fake.add_recording("default:notify-1", os.urandom(2048))).status_code == 202
    archived = {t["id"]: t for t in service.wait_for_states(2)}
    delivered = service.wait_for_delivered(hooks, 2)
    assert all(h.signed_by(SECRET) for h in delivered)
    assert all(h.headers["X-Archiver-Event-Id"] == h.event["id"] for h in delivered)
    assert {h.event["type"] for h in delivered} == {"file.archived"}
    assert {h.event["data"]["id"]: h.event["data"] for h in delivered} == archived  # as `transfers list` shows them

    hooks.down()
    assert fake.deliver(url, fake.add_recording("default:notify-2", os.urandom(2048))).status_code == 202
    service.wait_for_states(4)
    wait_until(lambda: sum(n["attempts"] for n in service.notifications("--state", "pending")) >= 4,
               timeout=20, message="failed attempts recorded while the endpoint is down")
    waiting = service.notifications("--state", "pending")
    assert all(n["last_error"] and n["history"] for n in waiting)
    hooks.up()
    delivered = service.wait_for_delivered(hooks, 4)
    ids = [h.event["id"] for h in delivered]
    assert len(ids) == len(set(ids)) == 4 and all(h.signed_by(SECRET) for h in delivered)
    assert len({h.event["data"]["id"] for h in delivered}) == 4
    assert service.notifications("--failed") == []
    assert {n["state"] for n in service.notifications()} == {"delivered"}


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def test_a_worker_killed_in_the_middle_of_a_delivery_does_not_lose_it(
        archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path, hooks: HookReceiver) -> None:
    service = notified(archiver, tmp_path, hooks, "disk")
    url = service.start_web()
    worker = service.start_worker("worker", concurrency=1)
    service.start_scheduler()
    hooks.hanging.set()
    assert fake.deliver(url, fake.add_recording("default:notify-kill", os.urandom(2048))).status_code == 202
    assert hooks.arrived.wait(30), service.logs()[-5000:]
    for pid in [*children(worker.pid), worker.pid]:  # the pool's children too: nothing of that worker survives
        os.kill(pid, signal.SIGKILL)
    service.running.pop("worker").wait()
    hooks.hanging.clear()  # the hung request is recorded unanswered: its sender is gone
    service.start_worker("worker-2", concurrency=1)
    [delivered] = service.wait_for_delivered(hooks, 1)
    assert delivered.signed_by(SECRET) and delivered.event["type"] == "file.archived"
    wait_until(lambda: any(h.answered is None for h in hooks.hooks), timeout=5, message="the hung request recorded")
    [hung] = [h for h in hooks.hooks if h.answered is None]
    assert hung.event["id"] == delivered.event["id"] and hung.body == delivered.body  # the same event, same id
    [entry] = service.notifications()
    assert entry["state"] == "delivered" and entry["attempts"] >= 2
    assert any("abandoned" in (a.get("error") or "") for a in entry["history"])
