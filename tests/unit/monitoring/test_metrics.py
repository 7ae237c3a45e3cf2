"""The /metrics collector (worker/monitoring/metrics.py) and the figures behind it (worker/monitoring/stats.py,
worker/monitoring/tally.py), against a real redis-server."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from config.celery import TRANSFER_QUEUE
from tests.support.ledger_states import add_waiting
from worker.clock import now_ms
from worker.discovery.reconcile_state import completed
from worker.files import StreamFile, transfer_id
from worker.ledger.models import NewTransfer, State
from worker.ledger.store import Ledger
from worker.monitoring import tally
from worker.monitoring.metrics import ArchiverCollector, read_deadlines, registry_for, render
from worker.monitoring.stats import Stats
from worker.monitoring.tally import Tally

RETENTION = timedelta(days=14)


def a_file(n: int, end: datetime | None = None) -> StreamFile:
    end = end or datetime.now(UTC) - timedelta(hours=1)
    return StreamFile(call_cid="default:m", kind="recording", filename=f"rec_default_m_{n}.mp4",
                      url="https://cdn/x?sig=1", start_time=end - timedelta(minutes=5), end_time=end)


def add(ledger: Ledger, n: int, storage: str, state: State = "queued", end: datetime | None = None,
        dispatch_in_ms: int = 0) -> str:
    """A transfer of file `n` to `storage`, left in `state` the way the workers would leave it."""
    file = a_file(n, end)
    tid = transfer_id(file.file_id, storage)
    first: State = "skipped" if state == "skipped" else "queued"
    ledger.record(file, [NewTransfer(tid, storage, f"k/{n}", state=first)], expires_at=file.expires_at(RETENTION),
                  dispatch_in_ms=dispatch_in_ms)
    if state in ("archived", "failed", "lost", "transferring"):
        claim = ledger.claim(tid, "test", 60_000)
        assert claim.claimed
        if state != "transferring":
            assert ledger.finish(tid, claim.token, state, bytes=10)
    return tid


def scrape(ledger: Ledger, storages: tuple[str, ...] = ()) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and sorted labels."""
    collector = ArchiverCollector(ledger.redis, ledger.redis, TRANSFER_QUEUE, RETENTION, storages=storages)
    text = render(registry_for(collector)).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_transfers_are_counted_by_state_and_storage(ledger: Ledger) -> None:
    for n, (storage, state) in enumerate([("s3", "archived"), ("s3", "archived"), ("disk", "archived"),
                                          ("s3", "failed"), ("disk", "lost"), ("disk", "skipped"),
                                          ("s3", "queued"), ("s3", "transferring")]):
        add(ledger, n, storage, state)  # type: ignore[arg-type]
    samples = scrape(ledger)

    def count(state: str, storage: str) -> float | None:
        return samples.get(("archiver_transfers", (("state", state), ("storage", storage))))

    assert (count("archived", "s3"), count("archived", "disk")) == (2, 1)
    assert (count("failed", "s3"), count("lost", "disk"), count("skipped", "disk")) == (1, 1, 1)
    assert (count("queued", "s3"), count("running", "s3")) == (1, 1)
    assert count("queued", "disk") is None
    configured = scrape(ledger, storages=("disk", "gcs"))
    assert configured[("archiver_transfers", (("state", "queued"), ("storage", "disk")))] == 0
    assert configured[("archiver_transfers", (("state", "failed"), ("storage", "gcs")))] == 0


def test_worker_figures_pushed_through_redis_show_as_counters_and_a_histogram(ledger: Ledger) -> None:
    stats = Stats(ledger.redis)
    stats.archived("s3", 1000, 0.5)
    stats.archived("s3", 2500, 90.0)
    stats.archived("disk", 7, 20_000.0)
    stats.retried("s3", "throttled")
    stats.retried("s3", "throttled")
    stats.failed("s3", "credentials")
    stats.failed("disk", "lost")
    stats.webhook("accepted", now=1_700_000_000.5)
    stats.webhook("refused")
    samples = scrape(ledger)

    assert samples[("archiver_archived_bytes_total", (("storage", "s3"),))] == 3500
    assert samples[("archiver_archived_bytes_total", (("storage", "disk"),))] == 7
    s3 = (("storage", "s3"),)
    assert samples[("archiver_transfer_duration_seconds_count", s3)] == 2
    assert samples[("archiver_transfer_duration_seconds_sum", s3)] == pytest.approx(90.5)
    assert samples[("archiver_transfer_duration_seconds_bucket", (("le", "1.0"), ("storage", "s3")))] == 1
    assert samples[("archiver_transfer_duration_seconds_bucket", (("le", "120.0"), ("storage", "s3")))] == 2
    assert samples[("archiver_transfer_duration_seconds_bucket", (("le", "14400.0"), ("storage", "disk")))] == 0
    assert samples[("archiver_transfer_duration_seconds_bucket", (("le", "+Inf"), ("storage", "disk")))] == 1
    assert samples[("archiver_transfer_retries_total", (("reason", "throttled"), ("storage", "s3")))] == 2
    assert samples[("archiver_transfer_failures_total", (("reason", "credentials"), ("storage", "s3")))] == 1
    assert samples[("archiver_transfer_failures_total", (("reason", "lost"), ("storage", "disk")))] == 1
    assert samples[("archiver_webhook_requests_total", (("outcome", "accepted"),))] == 1
    assert samples[("archiver_webhook_requests_total", (("outcome", "refused"),))] == 1
    assert samples[("archiver_last_webhook_timestamp_seconds", ())] == 1_700_000_000.5  # refusals do not count


def test_bytes_by_day_lists_the_last_30_days_with_zeros(ledger: Ledger) -> None:
    stats = Stats(ledger.redis)
    now = datetime(2026, 11, 27, 12, tzinfo=UTC).timestamp()
    stats.archived("s3", 100, 1.0, now=now)
    stats.archived("disk", 50, 1.0, now=now)
    stats.archived("s3", 5, 1.0, now=now - 86_400 * 3)
    days = stats.bytes_by_day(30, now=now)
    assert len(days) == 30 and days[-1] == ("2026-11-27", 150) and days[-4] == ("2026-11-24", 5)
    assert days[0][0] == "2026-10-29" and sum(b for _, b in days) == 155


def test_queue_depth_due_transfers_and_at_risk_come_from_redis(ledger: Ledger) -> None:
    ledger.redis.rpush(TRANSFER_QUEUE, "m1", "m2", "m3")
    add(ledger, 1, "s3", dispatch_in_ms=-30_000)
    add(ledger, 2, "s3", dispatch_in_ms=60_000)  # not due yet
    add(ledger, 3, "s3", "transferring")  # its lease runs: not due
    ledger.redis.set("archiver:at_risk", 4)
    samples = scrape(ledger)
    assert samples[("archiver_queue_depth", ())] == 3
    assert samples[("archiver_due_transfers", ())] == 1
    assert 29 <= samples[("archiver_oldest_due_age_seconds", ())] < 40
    assert samples[("archiver_files_at_risk", ())] == 4


def test_unarchived_age_and_deadline_follow_the_soonest_to_be_deleted_file(ledger: Ledger) -> None:
    now = time.time()
    assert ("archiver_unarchived_deadline_seconds", ()) not in scrape(ledger)  # nothing unarchived: no sample
    ended = datetime.fromtimestamp(now, UTC) - RETENTION - timedelta(hours=2)  # deleted two hours ago
    add(ledger, 1, "s3", end=ended)
    add(ledger, 2, "s3", end=datetime.fromtimestamp(now, UTC) - timedelta(days=1))
    add(ledger, 3, "s3", "archived", end=ended - timedelta(days=1))  # archived: not counted
    clocks = read_deadlines(ledger.redis, RETENTION, now=now)
    assert clocks.soonest_deadline_in == pytest.approx(-7200, abs=1)
    assert clocks.oldest_unarchived_age == pytest.approx(RETENTION.total_seconds() + 7200, abs=1)
    assert scrape(ledger)[("archiver_unarchived_deadline_seconds", ())] == pytest.approx(-7200, abs=5)


def test_files_waiting_for_their_routes_are_counted_by_reason_with_the_oldest_age(ledger: Ledger) -> None:
    """A file with no transfer yet (call-level routing) counts; 0 of each reason when none waits."""
    assert scrape(ledger)[("archiver_files_routing", (("reason", "call_lookup_failed"),))] == 0
    assert scrape(ledger)[("archiver_oldest_routing_age_seconds", ())] == 0
    now = now_ms()
    failing = add_waiting(ledger, "w1", created=now - 90_000)
    add_waiting(ledger, "w2", created=now - 5_000)
    ledger.defer_routing(failing, 10_000, "Stream API GET /call: ConnectError")
    add(ledger, 1, "s3")  # a transfer: not waiting for routes
    samples = scrape(ledger)
    assert samples[("archiver_files_routing", (("reason", "call_lookup_failed"),))] == 1
    assert samples[("archiver_files_routing", (("reason", "call_lookup_pending"),))] == 1
    assert 90 <= samples[("archiver_oldest_routing_age_seconds", ())] < 100


def test_stream_api_requests_and_rate_limit_waits_show_as_counters(ledger: Ledger) -> None:
    """Every process's Stream API answers and waits, by endpoint (and outcome), summed in Redis."""
    endpoint = "GET /api/v2/video/call/{type}/{id}"
    for stats in (Stats(ledger.redis), Stats(ledger.redis)):  # two processes
        stats.stream_request(endpoint, "ok")
        stats.stream_request(endpoint, "rate_limited")
        stats.stream_waited(endpoint, 1.25)
    samples = scrape(ledger)
    assert samples[("archiver_stream_requests_total", (("endpoint", endpoint), ("outcome", "ok")))] == 2
    assert samples[("archiver_stream_requests_total", (("endpoint", endpoint), ("outcome", "rate_limited")))] == 2
    assert samples[("archiver_stream_rate_limit_wait_seconds_total", (("endpoint", endpoint),))] == 2.5


def test_storage_up_reflects_each_storages_last_check(ledger: Ledger) -> None:
    stats = Stats(ledger.redis)
    stats.storage_checked("s3", True, None)
    stats.storage_checked("disk", False, "disk_full")
    samples = scrape(ledger)
    assert samples[("archiver_storage_up", (("storage", "s3"),))] == 1
    assert samples[("archiver_storage_up", (("storage", "disk"),))] == 0
    assert stats.storage_health()["disk"].reason == "disk_full"


def test_a_large_state_is_counted_once_then_only_its_newcomers(ledger: Ledger, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    monkeypatch.setattr(tally, "EXACT_LIMIT", 3)
    monkeypatch.setattr(tally, "CHUNK", 2)
    ids = [add(ledger, n, "s3" if n % 2 else "disk", "archived") for n in range(7)]
    counter = Tally(ledger.redis)
    assert counter.by_state()["archived"] == {"s3": 3, "disk": 4}
    assert ledger.redis.get("archiver:stats:tally:archived")
    time.sleep(0.002)  # a later millisecond than every counted member
    add(ledger, 7, "s3", "archived")
    commands: list[str] = []
    original = counter._by_rank
    monkeypatch.setattr(counter, "_by_rank", lambda state: commands.append(state) or original(state))
    assert counter.by_state()["archived"] == {"s3": 4, "disk": 4}
    assert commands == []  # the newcomer was added to the kept count, nothing was counted again
    ledger.redis.zrem("archiver:state:archived", ids[0])  # one left the state (e.g. pruned)
    monkeypatch.setattr(tally, "RECOUNT_EVERY", 0.0)
    assert counter.by_state()["archived"] == {"s3": 4, "disk": 3}
    assert commands == ["archived"]


def test_stats_written_while_redis_is_away_are_added_to_the_next_write(ledger: Ledger, redis_url: str) -> None:
    away = Stats(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2))
    away.retried("s3", "unreachable")  # logged, not raised
    away.redis = ledger.redis
    away.retried("s3", "unreachable")
    assert Stats(ledger.redis).pairs("stats:retries") == {("s3", "unreachable"): 2}


def test_the_last_reconciliations_and_their_failed_calls_are_exposed_by_mode(ledger: Ledger) -> None:
    """No sample before a reconciliation completed; then each mode's completion time and failed calls."""
    assert not [k for k in scrape(ledger) if k[0].startswith("archiver_last_reconcile")]
    before = time.time()
    completed(ledger, "full", now_ms() - 60_000, 0)
    completed(ledger, "incremental", now_ms(), 3)
    samples = scrape(ledger)
    for mode in ("full", "incremental"):
        assert before - 1 <= samples[("archiver_last_reconcile_timestamp_seconds", (("mode", mode),))] <= time.time()
    assert samples[("archiver_reconcile_failed_calls", (("mode", "incremental"),))] == 3
    assert samples[("archiver_reconcile_failed_calls", (("mode", "full"),))] == 0
