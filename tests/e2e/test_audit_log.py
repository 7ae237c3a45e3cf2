"""The audit log with real processes: the scheduler exports it on its own period (shorter than
sweep_every), `archiver audit-log verify` as a process finds it intact, then names a tampered entry."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import Archiver, local_storage
from tests.fakestream.server import FakeStream
from tests.support.processes import wait_until

pytestmark = pytest.mark.e2e


def exported(root: Path) -> list[tuple[Path, dict[str, object]]]:
    """(object, entry) for every exported line, in seq order."""
    found = [(path, json.loads(line)) for path in (root / "audit-log").rglob("*.jsonl")
             for line in path.read_text().splitlines()] if (root / "audit-log").exists() else []
    return sorted(found, key=lambda item: int(str(item[1]["seq"])))


def test_the_scheduler_exports_the_log_and_verify_names_a_tampered_entry(
        archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path) -> None:
    disk, vault = tmp_path / "disk", tmp_path / "vault"
    service = archiver([local_storage(disk), local_storage(vault, "vault")], audit_log_storage="vault",
                       audit_log_every="1s", sweep_every="5s")
    url = service.start_all()
    recordings = [fake.add_recording(f"default:kept-{n}", os.urandom(5_000)) for n in range(2)]
    for recording in recordings:
        assert fake.deliver(url, recording).status_code == 202
    service.wait_for_states(2)
    wait_until(lambda: len([e for _, e in exported(vault) if e["action"] == "archive"]) == 2, timeout=30,
               message="both archives exported by the scheduler")
    entries = exported(vault)
    assert {e["call_cid"] for _, e in entries} == {"default:kept-0", "default:kept-1"}
    assert all(e["actor"] == "worker" for _, e in entries)

    checked = service.cli("audit-log", "verify")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "chain intact" in checked.stdout

    path, entry = entries[0]
    lines = path.read_text().splitlines()
    number = next(n for n, line in enumerate(lines, start=1) if json.loads(line)["seq"] == entry["seq"])
    lines[number - 1] = json.dumps({**entry, "bytes": 1}, sort_keys=True, separators=(",", ":"))
    path.write_text("".join(line + "\n" for line in lines))
    tampered = service.cli("audit-log", "verify")
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    key = path.relative_to(vault).as_posix()
    assert f"chain BROKEN at seq {entry['seq']} ({key} line {number}): altered" in tampered.stdout
