"""`archiver find` end to end: a file delivered by webhook and routed by its call's custom data (GetCall),
and a file only a backfill found (QueryCalls), both archived by a real worker, are found by that custom
data through the real CLI, newest first, with their storage and key; the status page lists them too."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Archiver, local_storage
from tests.fakestream.server import FakeStream
from worker.edge.web import paths

pytestmark = pytest.mark.e2e
TOKEN = "e2e-status-token-find-0a1b2c"


def find(service: Archiver, *args: str) -> list[dict[str, Any]]:
    result = service.cli("find", "--json", *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_files_from_webhooks_and_from_a_backfill_are_found_by_their_calls_custom_data(
        archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path) -> None:
    service = archiver([local_storage(tmp_path / "disk"), local_storage(tmp_path / "vault", "vault")])
    service.env["ARCHIVER_STATUS_TOKEN"] = TOKEN
    url = service.start_web()
    service.start_worker()  # no scheduler: the backfill, not its reconciliation, finds the second file
    now = datetime.now(UTC)
    fake.add_call("default", "board", ended_at=now - timedelta(hours=3),
                  custom={"archive_storage": "vault", "tenant": "acme", "case": 4711})
    delivered = fake.add_recording("default:board", os.urandom(3000), end_time=now - timedelta(hours=3))
    fake.add_call("default", "standup", ended_at=now - timedelta(hours=1), custom={"tenant": "acme"})
    listed = fake.add_recording("default:standup", os.urandom(2000), end_time=now - timedelta(hours=1))
    fake.add_call("default", "other", ended_at=now - timedelta(hours=2), custom={"tenant": "globex"})
    fake.add_recording("default:other", os.urandom(1000), end_time=now - timedelta(hours=2))

    assert fake.deliver(url, delivered).status_code == 202  # routed by GetCall's custom data: to vault
    service.wait_for_states(1)
    assert [(r["filename"], r["storage"]) for r in find(service, "--custom", "tenant=acme")] == \
        [(delivered.filename, "vault")]
    backfill = service.cli("backfill", "--since", "1d")
    assert backfill.returncode == 0, backfill.stderr
    service.wait_for_states(3)

    rows = find(service, "--custom", "tenant=acme")
    assert [(r["call_cid"], r["filename"], r["storage"]) for r in rows] == [
        ("default:standup", listed.filename, "disk"), ("default:board", delivered.filename, "vault")]
    assert (tmp_path / "vault" / rows[1]["key"]).read_bytes() == delivered.read_bytes()
    shown = service.cli("transfers", "show", rows[0]["id"])
    assert json.loads(shown.stdout) == rows[0]
    assert [r["filename"] for r in find(service, "--custom", "case=4711", "--call", "board")] == [delivered.filename]
    assert [r["call_cid"] for r in find(service, "--since", "1d")] == ["default:standup", "default:other",
                                                                       "default:board"]

    page = httpx.get(f"http://127.0.0.1:{service.web_port}{paths.STATUS}", params={"find": "tenant=acme"},
                     headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).text
    results = page.split('<section id="find-results">')[1].split("</section>")[0]
    assert results.index(listed.filename) < results.index(delivered.filename) and "globex" not in results
