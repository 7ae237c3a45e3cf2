"""A local storage whose disk fills up, or that refuses to be written: real `archiver` processes (web,
worker, scheduler) archive from the fake Stream into a directory.

The tests run as root on ext4, where ``chmod`` denies nothing, so the faults are made this way:

- **disk full**: a 2 MiB tmpfs mounted for the test (``mount -t tmpfs -o size=2m``) gives a real ENOSPC
  midway through a 3 MiB recording; ``mount -o remount,size=64m`` frees it. Mounting needs root (or
  CAP_SYS_ADMIN): without it the test is skipped, saying so.
- **permission denied**: the storage's root made immutable (``chattr +i``), which refuses even root
  (EPERM); run as an ordinary user, ``chmod 0555`` refuses instead (EACCES).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from tests.chaos.conftest import is_manifest
from tests.e2e.conftest import Archiver, local_storage, sha256
from tests.fakestream.server import FakeStream
from tests.support.chaos_report import ChaosReport
from tests.support.processes import wait_until
from worker.ledger.models import Transfer
from worker.ledger.store import Ledger

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
T = TypeVar("T")


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs of its own, unmounted afterwards (lazily if something still holds it)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    mounted = run("mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(mount))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        if run("umount", str(mount)).returncode != 0:
            run("umount", "--lazy", str(mount))


@dataclass
class Unwritable:
    """A directory nobody may create anything in, until `allow`."""

    path: Path

    def deny(self) -> None:
        if os.geteuid() == 0:
            done = run("chattr", "+i", str(self.path))
            assert done.returncode == 0, f"chattr +i failed: {done.stderr}"
        else:
            self.path.chmod(0o555)

    def allow(self) -> None:
        if os.geteuid() == 0:
            run("chattr", "-i", str(self.path))
        self.path.chmod(0o755)


@pytest.fixture
def unwritable(tmp_path: Path) -> Iterator[Unwritable]:
    directory = Unwritable(tmp_path / "archive")
    directory.path.mkdir()
    directory.deny()
    try:
        yield directory
    finally:
        directory.allow()  # pytest must be able to remove it


def files_under(root: Path) -> list[str]:
    """Every file (not directory) under `root`, hidden ones included, but the sessions' manifests."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir() and not is_manifest(p.name))


def only_transfer(ledger: Ledger) -> str:
    wait_until(lambda: len(ledger.ids()) == 1, timeout=15, message="the transfer in the ledger")
    (tid,) = ledger.ids()
    return tid


def between_attempts(ledger: Ledger, tid: str, attempts: int, look: Callable[[], T]) -> tuple[Transfer, T]:
    """The transfer waiting to retry after at least `attempts` attempts, and what `look` saw while no
    attempt ran (the ledger says the same before and after it)."""
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        before = ledger.get(tid)
        assert before is not None and before.state in ("queued", "transferring"), before
        if before.state == "queued" and before.attempts >= attempts:
            seen = look()
            after = ledger.get(tid)
            if after is not None and (after.state, after.attempts) == ("queued", before.attempts):
                return before, seen
        time.sleep(0.05)
    raise AssertionError(f"no retry after {attempts} attempts: {ledger.get(tid)}")


def test_a_full_disk_is_retried_and_leaves_nothing_half_written(
    small_disk: Path, service: Callable[..., Archiver], fake: FakeStream, ledger: Ledger,
    chaos_report: ChaosReport,
) -> None:
    """A 3 MiB recording onto a 2 MiB disk: each attempt fails with ENOSPC, goes back to ``queued`` with
    that error and is retried; between attempts no file is there (neither the final name nor a
    temporary one) and the space is free again; `archiver storage check` says ``disk_full``; once the
    disk grows the file is archived whole."""
    archiver = service([local_storage(small_disk)])
    recording = fake.add_recording("default:full-disk", os.urandom(3 * MiB))
    assert fake.deliver(archiver.webhook_url, recording).status_code == 202
    tid = only_transfer(ledger)

    transfer, (files, used) = between_attempts(
        ledger, tid, 2, lambda: (files_under(small_disk), shutil.disk_usage(small_disk).used))
    assert transfer.error is not None and transfer.error.startswith("local storage 'disk': cannot ")
    assert "No space left on device (ENOSPC)" in transfer.error
    assert files == [] and used < 256 * 1024  # not even an unlinked temporary file still held open

    check = archiver.cli("storage", "check", "disk")
    assert check.returncode == 1 and "check failed (disk_full)" in check.stderr, check.stderr

    assert run("mount", "-o", "remount,size=64m", str(small_disk)).returncode == 0  # the operator frees space
    freed = time.monotonic()
    (entry,) = archiver.wait_for_states(1, timeout=30)
    chaos_report.record("local disk full, then space freed", sent=1, archived=1,
                        duplicates=len(files_under(small_disk)) - 1, recover_seconds=time.monotonic() - freed)
    assert entry["attempts"] > 2 and entry["error"] is None and entry["sha256"] == sha256(recording.read_bytes())
    assert files_under(small_disk) == [entry["key"]]
    assert (small_disk / entry["key"]).read_bytes() == recording.read_bytes()


def test_a_directory_that_refuses_writes_fails_at_once_until_retried_by_command(
    unwritable: Unwritable, service: Callable[..., Archiver], fake: FakeStream, ledger: Ledger,
    chaos_report: ChaosReport,
) -> None:
    """A storage root nobody may write in: the transfer is ``failed`` after one attempt with the
    refusal in its error, nothing is created; `archiver storage check` says ``permission``; once
    the directory is writable, ``archiver transfers retry --state failed`` archives it."""
    archiver = service([local_storage(unwritable.path)])
    recording = fake.add_recording("default:no-permission", os.urandom(256 * 1024))
    assert fake.deliver(archiver.webhook_url, recording).status_code == 202
    (failed,) = archiver.wait_for_states(1, state="failed", timeout=30)
    assert failed["attempts"] == 1 and failed["error"].startswith("local storage 'disk': cannot ")
    assert "Operation not permitted (EPERM)" in failed["error"] or "Permission denied (EACCES)" in failed["error"]
    assert files_under(unwritable.path) == []

    check = archiver.cli("storage", "check", "disk")
    assert check.returncode == 1 and "check failed (permission)" in check.stderr, check.stderr

    unwritable.allow()
    allowed = time.monotonic()
    result = archiver.cli("transfers", "retry", "--state", "failed")
    assert result.returncode == 0 and "queued 1 transfer(s) again" in result.stdout, result.stdout
    (entry,) = archiver.wait_for_states(1, timeout=30)
    assert entry["attempts"] == 2 and entry["error"] is None
    assert files_under(unwritable.path) == [entry["key"]]
    assert (unwritable.path / entry["key"]).read_bytes() == recording.read_bytes()
    chaos_report.record("local permission denied, then retry by command", sent=1, archived=1,
                        duplicates=len(files_under(unwritable.path)) - 1, recover_seconds=time.monotonic() - allowed)
