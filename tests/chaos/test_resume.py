"""A worker SIGKILLed three quarters through a large upload: the next worker resumes it and writes only the
rest (issue 18, "resume across attempts"). Real processes: redis-server, `archiver web|worker|scheduler`,
the fake Stream behind a slow proxy (so that the kill lands where it should).

What the storage counts. Local disk: every byte a process hands to write(2) is in its ``wchar``
(/proc/<pid>/io), the second worker's whole process group read while it is still alive; and the object is
the first worker's temporary file itself (same inode), not a copy. The destination is a parameter
(`Destination`): another store joins with its own way of counting (S3: the parts ListParts shows).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.conftest import CHAOS, ChaosArchiver, deliver_slowly
from tests.e2e.conftest import local_storage
from tests.fakestream.server import FakeStream
from tests.support.chaos import SlowProxy, wait_for, wait_for_transfer
from worker.storage.base import UploadState

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024
SIZE = int(os.environ.get("ARCHIVER_RESUME_TEST_MIB", "256")) * MiB  # bench/resume.py runs it with 4 GiB
CHECKPOINT = 16 * MiB
KILL_AT = 0.75
WAIT = max(180.0, SIZE / MiB / 10)  # seconds for one worker's part (a busy machine, a large file)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(16 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def group_wchar(leader: int) -> int:
    """Bytes every live process of the group led by `leader` handed to write(2) and send(2) so far."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != leader:
                continue
            io = dict(line.split(": ") for line in (entry / "io").read_text().splitlines())
        except (OSError, ValueError):
            continue  # gone meanwhile
        total += int(io["wchar"])
    return total


@dataclass
class LocalDestination:
    """Local disk: progress is the temporary file's size; the object, its final file."""

    root: Path

    def storage(self) -> dict[str, Any]:
        return local_storage(self.root)

    def partial(self) -> Path | None:
        found = [p for p in self.root.rglob(".*.partial") if p.is_file()]
        return found[0] if found else None

    def uploaded(self) -> int:
        """Bytes the store holds of the unfinished upload."""
        partial = self.partial()
        try:
            return partial.stat().st_size if partial is not None else 0
        except FileNotFoundError:
            return 0

    def object_sha256(self, key: str) -> str:
        return sha256_of(self.root / key)


@pytest.fixture(params=["local"])
def destination(request: pytest.FixtureRequest, tmp_path: Path) -> LocalDestination:
    return LocalDestination(tmp_path / "archive")


def logged(archiver: ChaosArchiver, worker: str, event: str) -> list[dict[str, Any]]:
    lines = archiver.log_of(worker).read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if f'"{event}"' in line and line.startswith("{")]


def test_a_worker_killed_at_three_quarters_leaves_only_the_rest_to_write(
    chaos_archiver: Callable[..., ChaosArchiver], fake: FakeStream, slow_cdn: Callable[[int], SlowProxy],
    destination: LocalDestination, tmp_path: Path,
) -> None:
    """worker-a archives 256 MiB and is SIGKILLed once 75 % of it is in the store; worker-b resumes from
    the last checkpoint the ledger holds: the object is byte-identical, its SHA-256 the ledger's, and
    worker-b wrote the rest only (at most a checkpoint more than the bytes after the killed one's)."""
    source = tmp_path / "big.mp4"
    with source.open("wb") as out:
        for _ in range(SIZE // (16 * MiB)):
            out.write(os.urandom(16 * MiB))
    digest = sha256_of(source)
    proxy = slow_cdn(24 * MiB)  # per connection: worker-a needs seconds to reach 75 %
    archiver = chaos_archiver([destination.storage()], proxy=proxy,
                              call_storage_key="",
                              transfer={**CHAOS["transfer"], "resume_checkpoint": f"{CHECKPOINT // MiB}MiB"})
    file = fake.add_recording("default:resume-kill", source)
    assert deliver_slowly(fake, archiver.start_web(), file, proxy).status_code == 202
    archiver.start_scheduler()
    (tid,) = wait_for(archiver.ledger.ids, 30, "the transfer in the ledger")
    archiver.start_worker("worker-a", concurrency=1)

    wait_for(lambda: destination.uploaded() >= KILL_AT * SIZE, WAIT, "75 % of the file in the store")
    archiver.kill("worker-a")
    killed_at = destination.uploaded()
    transfer = archiver.ledger.get(tid)
    assert transfer is not None and transfer.state == "transferring" and transfer.upload is not None
    state = UploadState.from_json(transfer.upload)
    assert killed_at - state.offset <= 2 * CHECKPOINT, (killed_at, state.offset)
    partial = destination.partial()
    assert partial is not None
    inode = partial.stat().st_ino

    # worker-b's own start (its storage probe writes a few MiB) is not counted: the source trickles until
    # it has resumed the upload (nothing written to it yet: the prefix is read again first), then flows.
    proxy.rate = 256 * 1024
    worker_b = archiver.start_worker("worker-b", concurrency=1)
    wait_for(lambda: logged(archiver, "worker-b", "upload_resumed"), 120, "worker-b resuming the upload")
    before, resumed_from = group_wchar(worker_b.pid), time.monotonic()
    proxy.rate = 0
    done = wait_for_transfer(archiver.ledger, tid, lambda t: t.state == "archived", WAIT, "worker-b's archive")
    written_by_b = group_wchar(worker_b.pid) - before
    seconds = time.monotonic() - resumed_from
    rest = SIZE - state.offset
    print(f"\nkilled at {killed_at / MiB:.0f} MiB in the store, resumed from {state.offset / MiB:.0f} MiB; "
          f"worker-b wrote {written_by_b / MiB:.1f} MiB (the rest: {rest / MiB:.0f} MiB) in {seconds:.1f} s")

    assert (done.bytes, done.sha256) == (SIZE, digest) and done.upload is None
    assert destination.object_sha256(done.key) == digest
    assert (destination.root / done.key).stat().st_ino == inode  # the killed worker's file, gone on with
    (resumed,) = logged(archiver, "worker-b", "upload_resumed")
    assert resumed["offset"] == state.offset and resumed["transfer_id"] == tid
    assert rest <= SIZE * (1 - KILL_AT) + 2 * CHECKPOINT
    assert rest <= written_by_b <= rest + 2 * MiB, (rest, written_by_b)  # logs and Redis: well under 2 MiB
