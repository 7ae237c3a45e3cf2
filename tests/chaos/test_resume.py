"""A worker SIGKILLed three quarters through a large upload: the next worker resumes it and writes only the
rest (issue 18, "resume across attempts"). Real processes: redis-server, `archiver web|worker|scheduler`,
the fake Stream behind a slow proxy (so that the kill lands where it should).

What the storage counts (the destination is a parameter, `Destination`):

- local disk: every byte a process hands to write(2) is in its ``wchar`` (/proc/<pid>/io), the second
  worker's whole process group read while it is still alive; and the object is the first worker's
  temporary file itself (same inode), not a copy;
- S3 (moto_server behind `FaultProxy`, which sees every request either worker makes): what the killed worker
  left is what ListParts lists of the multipart upload once the proxy is idle (the ledger's parts among
  them, same sizes and ETags, each ETag the MD5 of that part of the source); what the second worker wrote
  is the UploadPart requests that reached the store after the kill: exactly the parts after the resumed
  offset, each once, of the upload the ledger names (no other upload of the key); the completed object's
  multipart ETag (MD5 of the parts' MD5s, "-N") is that of the source cut in parts of the same size, and
  none of its uploads is left pending. While worker-a runs, progress is the UploadPart bytes the proxy
  received (not ListParts: moto computes a part's ETag lazily, unlocked, and a ListParts racing the
  UploadPart that stores the part can leave a wrong ETag cached, which the object's ETag then carries).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.chaos.conftest import CHAOS, PREFIX, ChaosArchiver, deliver_slowly, pending_uploads
from tests.e2e.conftest import local_storage, s3_storage
from tests.fakestream.server import FakeStream
from tests.support.chaos import SlowProxy, wait_for, wait_for_transfer
from tests.support.faultproxy import FaultProxy, Recorded
from worker.storage.base import UploadState

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

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


class Destination(Protocol):
    """A store the test archives into, and its own way of counting what each worker wrote there."""

    transfer: dict[str, Any]  # [transfer] settings of its own (part size)

    def storage(self) -> dict[str, Any]: ...

    def uploaded(self) -> int:
        """Bytes the store holds of the unfinished upload (polled while worker-a runs)."""
        ...

    def killed(self, state: UploadState) -> int:
        """Right after the kill, before worker-b starts: what the store holds of the upload, checked
        against the ledger's `state` (its pieces are in the store as the state says)."""
        ...

    def counting(self, worker_b: int) -> None:
        """worker-b (the leader of its process group) has resumed: count what it writes from now."""
        ...

    def written(self) -> int:
        """Bytes of the object worker-b wrote to the store since `counting` (while it is still alive)."""
        ...

    def check_object(self, key: str, size: int, digest: str, source: Path) -> None:
        """The object under `key` is the source's bytes, stored as a fresh upload would have stored it, and
        nothing is left of the upload."""
        ...


@dataclass
class LocalDestination:
    """Local disk: progress is the temporary file's size; the object, its final file; worker-b's writes,
    its process group's ``wchar``."""

    root: Path
    transfer: dict[str, Any] = field(default_factory=dict)
    inode: int = 0
    worker_b: int = 0
    before: int = 0

    def storage(self) -> dict[str, Any]:
        return local_storage(self.root)

    def partial(self) -> Path | None:
        found = [p for p in self.root.rglob(".*.partial") if p.is_file()]
        return found[0] if found else None

    def uploaded(self) -> int:
        partial = self.partial()
        try:
            return partial.stat().st_size if partial is not None else 0
        except FileNotFoundError:
            return 0

    def killed(self, state: UploadState) -> int:
        partial = self.partial()
        assert partial is not None
        self.inode = partial.stat().st_ino
        return partial.stat().st_size

    def counting(self, worker_b: int) -> None:
        # worker-b's own start (its storage probe writes a few MiB) is not counted: it is counted from the
        # moment it has resumed the upload (nothing written to it yet: the prefix is read again first).
        self.worker_b, self.before = worker_b, group_wchar(worker_b)

    def written(self) -> int:
        return group_wchar(self.worker_b) - self.before

    def check_object(self, key: str, size: int, digest: str, source: Path) -> None:
        final = self.root / key
        assert (final.stat().st_size, sha256_of(final)) == (size, digest)
        assert final.stat().st_ino == self.inode  # the killed worker's file, gone on with
        assert self.partial() is None


S3_PART = 8 * MiB
S3_MAX = 512 * MiB  # moto_server keeps a completed object in memory (bench/resume.py's 4 GiB is local only)


def multipart_etag(path: Path, part_size: int) -> str:
    """The ETag S3 gives an object completed from `path` cut in parts of `part_size`."""
    md5s = []
    with path.open("rb") as file:
        while part := file.read(part_size):
            md5s.append(hashlib.md5(part).digest())
    return f"{hashlib.md5(b''.join(md5s)).hexdigest()}-{len(md5s)}"


def query(request: Recorded) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(request.target).query).items()}


@dataclass
class S3Destination:
    """moto_server behind a `FaultProxy` (every request of either worker goes through it; the test's own
    look-ups go to moto directly): progress is the UploadPart bytes the proxy received; what the killed
    worker left, the parts ListParts lists; worker-b's writes, the UploadPart requests after the kill."""

    proxy: FaultProxy
    s3: S3Client
    bucket: str
    transfer: dict[str, Any] = field(
        default_factory=lambda: {"part_size": f"{S3_PART // MiB}MiB", "multipart_threshold": f"{S3_PART // MiB}MiB"})
    upload_id: str = ""
    key: str = ""
    parts: int = 0  # in the state resumed
    etags: list[str] = field(default_factory=list)  # of those parts, as the ledger holds them
    mark: int = 0  # proxy.requests before worker-b

    def storage(self) -> dict[str, Any]:
        return s3_storage(self.proxy.url, self.bucket)

    def uploads(self) -> list[dict[str, Any]]:
        """The pending multipart uploads of recordings (not the workers' start-up probes)."""
        found = self.s3.list_multipart_uploads(Bucket=self.bucket, Prefix=PREFIX).get("Uploads", [])
        return [dict(u) for u in found if "archiver-check-" not in u["Key"]]

    def listed(self, key: str, upload_id: str) -> dict[int, dict[str, Any]]:
        page = self.s3.list_parts(Bucket=self.bucket, Key=key, UploadId=upload_id, MaxParts=1000)
        assert not page.get("IsTruncated")
        return {int(p["PartNumber"]): dict(p) for p in page.get("Parts", [])}

    def uploaded(self) -> int:
        """UploadPart bytes on their way to the store (at most a part more than it holds)."""
        return sum(int(r.headers["content-length"]) for r in self.sent_parts())

    def killed(self, state: UploadState) -> int:
        wait_for(self.proxy.idle, 30, "the killed worker's last request through the proxy")
        (upload,) = self.uploads()
        self.key, self.upload_id = upload["Key"], upload["UploadId"]
        assert state.handle["upload_id"] == self.upload_id
        listed = self.listed(self.key, self.upload_id)
        self.parts = len(state.pieces)
        assert sorted(listed)[:self.parts] == list(range(1, self.parts + 1))
        for number, (piece, etag) in enumerate(zip(state.pieces, state.handle["etags"], strict=True), 1):
            assert listed[number]["Size"] == piece.size == S3_PART
            assert listed[number]["ETag"].strip('"') == etag.strip('"')
        self.etags = [str(etag).strip('"') for etag in state.handle["etags"]]
        self.mark = len(self.proxy.requests)
        return sum(p["Size"] for p in listed.values())

    def counting(self, worker_b: int) -> None:
        pass  # every UploadPart after the kill is worker-b's (`mark`)

    def sent_parts(self) -> list[Recorded]:
        """UploadPart requests of a recording after the kill (any upload)."""
        return [r for r in list(self.proxy.requests)[self.mark:]
                if r.method == "PUT" and "partNumber" in query(r) and "archiver-check-" not in r.target]

    def written(self) -> int:
        sent = self.sent_parts()
        assert sent, "worker-b sent no part"
        assert {query(r)["uploadId"] for r in sent} <= {self.upload_id}  # the upload resumed, no other
        numbers = sorted(int(query(r)["partNumber"]) for r in sent)
        assert numbers == list(range(self.parts + 1, numbers[-1] + 1)), numbers  # each part after, once
        return sum(int(r.headers["content-length"]) for r in sent)

    def check_object(self, key: str, size: int, digest: str, source: Path) -> None:
        assert PREFIX + key == self.key
        head = self.s3.head_object(Bucket=self.bucket, Key=self.key)
        body = self.s3.get_object(Bucket=self.bucket, Key=self.key)["Body"]
        digest_of = hashlib.sha256()
        for chunk in body.iter_chunks(16 * MiB):
            digest_of.update(chunk)
        assert (head["ContentLength"], digest_of.hexdigest()) == (size, digest)
        sent = self.sent_parts()
        assert int(query(sent[-1])["partNumber"]) == -(-size // S3_PART)  # worker-b sent up to the last part
        assert head["ETag"].strip('"') == multipart_etag(source, S3_PART)  # parts 1..N, cut where a fresh one cuts
        with source.open("rb") as file:  # worker-a's parts, kept: the source's first bytes
            assert [hashlib.md5(file.read(S3_PART)).hexdigest() for _ in self.etags] == self.etags
        assert pending_uploads(self.s3, self.bucket) == []


@pytest.fixture(params=["local", "s3"])
def destination(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Destination]:
    if request.param == "local":
        yield LocalDestination(tmp_path / "archive")
        return
    if SIZE > S3_MAX:
        pytest.skip(f"{SIZE // MiB} MiB: more than moto_server is asked to hold ({S3_MAX // MiB} MiB)")
    moto_server: str = request.getfixturevalue("moto_server")
    with FaultProxy(moto_server) as proxy:
        yield S3Destination(proxy, request.getfixturevalue("s3"), request.getfixturevalue("bucket"))


def logged(archiver: ChaosArchiver, worker: str, event: str) -> list[dict[str, Any]]:
    lines = archiver.log_of(worker).read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if f'"{event}"' in line and line.startswith("{")]


def test_a_worker_killed_at_three_quarters_leaves_only_the_rest_to_write(
    chaos_archiver: Callable[..., ChaosArchiver], fake: FakeStream, slow_cdn: Callable[[int], SlowProxy],
    destination: Destination, tmp_path: Path,
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
    transfer = {**cast(dict[str, Any], CHAOS["transfer"]), **destination.transfer,
                "resume_checkpoint": f"{CHECKPOINT // MiB}MiB"}
    archiver = chaos_archiver([destination.storage()], proxy=proxy, call_storage_key="", transfer=transfer)
    file = fake.add_recording("default:resume-kill", source)
    assert deliver_slowly(fake, archiver.start_web(), file, proxy).status_code == 202
    archiver.start_scheduler()
    (tid,) = wait_for(archiver.ledger.ids, 30, "the transfer in the ledger")
    archiver.start_worker("worker-a", concurrency=1)

    wait_for(lambda: destination.uploaded() >= KILL_AT * SIZE, WAIT, "75 % of the file in the store")
    archiver.kill("worker-a")
    transfer_a = archiver.ledger.get(tid)
    assert transfer_a is not None and transfer_a.state == "transferring" and transfer_a.upload is not None
    state = UploadState.from_json(transfer_a.upload)
    killed_at = destination.killed(state)
    assert killed_at - state.offset <= 2 * CHECKPOINT, (killed_at, state.offset)

    # The source trickles until worker-b has resumed the upload (nothing written to it yet: the prefix is
    # read again first), then flows.
    proxy.rate = 256 * 1024
    worker_b = archiver.start_worker("worker-b", concurrency=1)
    wait_for(lambda: logged(archiver, "worker-b", "upload_resumed"), 120, "worker-b resuming the upload")
    destination.counting(worker_b.pid)
    resumed_from = time.monotonic()
    proxy.rate = 0
    done = wait_for_transfer(archiver.ledger, tid, lambda t: t.state == "archived", WAIT, "worker-b's archive")
    written_by_b = destination.written()
    seconds = time.monotonic() - resumed_from
    rest = SIZE - state.offset
    print(f"\nkilled at {killed_at / MiB:.0f} MiB in the store, resumed from {state.offset / MiB:.0f} MiB; "
          f"worker-b wrote {written_by_b / MiB:.1f} MiB (the rest: {rest / MiB:.0f} MiB) in {seconds:.1f} s")

    assert (done.bytes, done.sha256) == (SIZE, digest) and done.upload is None
    destination.check_object(done.key, SIZE, digest, source)
    (resumed,) = logged(archiver, "worker-b", "upload_resumed")
    assert resumed["offset"] == state.offset and resumed["transfer_id"] == tid
    assert rest <= SIZE * (1 - KILL_AT) + 2 * CHECKPOINT
    assert rest <= written_by_b <= rest + 2 * MiB, (rest, written_by_b)  # local: logs and Redis, well under 2 MiB


def test_the_fault_proxy_forwards_nothing_of_a_request_cut_short() -> None:
    """A worker killed while it sends a part: the proxy in front of moto forwards nothing of the body it
    never got whole (as S3 keeps nothing of it), so ListParts after the kill shows no half part."""
    got: list[int] = []

    class Upstream(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            got.append(len(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, args=(0.05,), daemon=True).start()
    try:
        with FaultProxy(f"http://127.0.0.1:{upstream.server_address[1]}") as proxy:
            port = int(proxy.url.rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port)) as whole:
                whole.sendall(b"PUT /b/k?partNumber=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd")
                assert whole.recv(64).startswith(b"HTTP/1.1 200")
            with socket.create_connection(("127.0.0.1", port)) as cut:
                cut.sendall(b"PUT /b/k?partNumber=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabcd")
            wait_for(lambda: proxy.idle() and len(proxy.requests) == 1 or None, 10, "the proxy done with both")
            time.sleep(0.2)  # a forward would be on its way by now
            assert got == [4] and [r.target for r in proxy.requests] == ["/b/k?partNumber=1"]
    finally:
        upstream.shutdown()
        upstream.server_close()
