"""Redis (ledger and broker) stopped and restarted under the running archiver: AOF keeps the ledger
and the queued work, the receiver answers 503 while Redis is away, and web, workers and scheduler
reconnect by themselves. Every file ends archived once, byte-identical, under its one key.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.chaos.conftest import PREFIX, ChaosArchiver, deliver_slowly, pending_uploads, stored_keys, stored_sha256
from tests.e2e.conftest import s3_storage
from tests.fakestream.server import FakeStream
from tests.support.chaos import SlowProxy, events_named, wait_for
from tests.support.chaos_report import ChaosReport
from tests.support.redis import RedisServer
from worker.edge.web import paths
from worker.ledger.models import Transfer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024
FILES = 6
OUTAGE_S = 5.0  # longer than the transfer lease: running transfers lose their leases
PROGRESS = ["queued", "transferring", "archived"]


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, with `appendonly yes` and `appendfsync everysec`."""
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    yield server
    server.stop()


def stop_redis(server: RedisServer, sig: int) -> None:
    """SIGTERM (Redis flushes its AOF and exits) or SIGKILL (the last second of writes may be lost)."""
    assert server.process is not None
    server.process.send_signal(sig)
    server.process.wait(timeout=10)
    server.process = None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_redis_restart_loses_nothing_and_everything_reconnects(
    aof_redis: RedisServer, chaos_archiver: Callable[..., ChaosArchiver], slow_cdn: Callable[[int], SlowProxy],
    fake: FakeStream, moto_server: str, bucket: str, s3: S3Client, sig: int, chaos_report: ChaosReport,
) -> None:  # aof_redis first: it is set up first and so stopped last, after the archiver's processes
    """Transfers queued and running when Redis goes away (cleanly or killed) and comes back on the
    same port and directory: nothing is lost, nothing stored twice, no archiver process restarted."""
    proxy = slow_cdn(6 * MiB)
    service = chaos_archiver([s3_storage(moto_server, bucket)], proxy, redis_url=aof_redis.url,
                             call_storage_key="")
    url = service.start_web()
    files = [fake.add_recording(f"default:aof-{n}", os.urandom(16 * MiB + n)) for n in range(FILES)]
    for file in files:
        assert deliver_slowly(fake, url, file, proxy).status_code == 202
    # after the deliveries: the scheduler's first reconciliation finds every file known
    processes = [service.start_scheduler(), service.start_worker("worker-a", 1), service.start_worker("worker-b", 1)]
    ledger = service.ledger
    time.sleep(1.1)  # appendfsync everysec: what was answered 202 is on disk a second later

    def running_and_queued() -> dict[str, Transfer] | None:
        transfers = {t.id: t for t in ledger.iter_transfers()}
        states = [t.state for t in transfers.values()]
        uploading = [k for k in pending_uploads(s3, bucket) if k.startswith(PREFIX)]
        return transfers if states.count("transferring") == 2 and "queued" in states and uploading else None

    before = wait_for(running_and_queued, 30, "two transfers running (one mid multipart upload), others queued")
    assert len(before) == FILES
    stop_redis(aof_redis, sig)
    late = fake.add_recording("default:aof-late", os.urandom(2 * MiB))
    started = time.monotonic()
    assert deliver_slowly(fake, url, late, proxy).status_code == 503  # never 2xx: Stream will retry
    assert service.get(paths.READYZ).status_code == 503
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - started)))
    aof_redis.start()
    restarted = time.monotonic()
    proxy.rate = 0  # what is left may go at full speed

    after = {t.id: t for t in ledger.iter_transfers()}
    assert set(after) == set(before), "every transfer recorded came back from the AOF"
    if sig == signal.SIGTERM:  # a clean stop writes everything: no transfer goes back (SIGKILL may lose
        for tid, was in before.items():  # its last second: a claim, a result, to be done again)
            assert PROGRESS.index(after[tid].state) >= PROGRESS.index(was.state), tid
    wait_for(lambda: _ready(service), 15, "the receiver to answer again")
    assert deliver_slowly(fake, url, late, proxy).status_code == 202  # Stream's retry

    archived = service.wait_for_states(FILES + 1, timeout=60)
    assert all(p.poll() is None for p in processes), "no archiver process died or was restarted"
    assert len(ledger.ids()) == FILES + 1
    assert stored_keys(s3, bucket) == sorted(PREFIX + t["key"] for t in archived)
    for file in [*files, late]:
        (entry,) = [t for t in archived if t["filename"] == file.filename]
        assert stored_sha256(s3, bucket, entry["key"]) == file.sha256 == entry["sha256"]
        assert fake.downloads_of(file) >= 1
    assert fake.downloads_of(late) == 1
    assert pending_uploads(s3, bucket) == []
    assert events_named(service.log_of("web"), "webhook_not_recorded")
    chaos_report.record(f"Redis restarted ({signal.Signals(sig).name}) under queued and running transfers",
                        sent=FILES + 1, archived=len(archived),
                        duplicates=len(stored_keys(s3, bucket)) - len(archived),
                        recover_seconds=time.monotonic() - restarted)


def _ready(service: ChaosArchiver) -> bool:
    try:
        return service.get(paths.READYZ).status_code == 200
    except httpx.HTTPError:
        return False
