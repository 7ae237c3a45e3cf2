"""GET /metrics: the cluster's figures in Prometheus' text format, read from Redis at scrape time.

Every web replica exposes the same values (they come from the shared Redis, not from the process):
scrape one, or aggregate with max(). The names are a contract with the alert rules; docs/monitoring.md
says what each one means. A scrape costs a bounded number of Redis commands (ZCARD, ZCOUNT, HGETALL,
LLEN; the split of transfers by storage is bounded by `worker.monitoring.tally`, and the files waiting for their
routes are counted inside Redis by `worker.ledger.unrouted`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from worker.discovery.reconcile_state import MODES, read_marks
from worker.ledger.keys import DEFAULT_PREFIX, Keys
from worker.ledger.unrouted import REASONS, read_routing
from worker.monitoring.stats import Stats, durations
from worker.monitoring.tally import STATE_LABELS, Tally


@dataclass(frozen=True)
class Deadlines:
    """The ledger's clocks: what is due, and how close Stream's deletions are."""

    due: int
    oldest_due_age: float
    at_risk: int
    oldest_unarchived_age: float | None
    soonest_deadline_in: float | None


def read_deadlines(client: redis.Redis, retention: timedelta, prefix: str = DEFAULT_PREFIX,
                   now: float | None = None) -> Deadlines:
    """`due`: transfers whose dispatch time has passed (a running one's is its lease end, so only one
    whose worker died counts). The unarchived ones (queued or running: the ``expiry`` index) are aged
    from the end of their recording (their deadline less `retention`)."""
    now = time.time() if now is None else now
    now_ms = int(now * 1000)
    pipe = client.pipeline(transaction=False)
    keys = Keys(prefix)
    pipe.zcount(keys.due, "-inf", now_ms)
    pipe.zrangebyscore(keys.due, "-inf", now_ms, start=0, num=1, withscores=True)
    pipe.get(keys.at_risk)
    pipe.zrange(keys.expiry, 0, 0, withscores=True)
    due, oldest_due, at_risk, soonest = pipe.execute()
    oldest_due_age = max(0.0, now - oldest_due[0][1] / 1000) if oldest_due else 0.0
    deadline = cast(list[tuple[str, float]], soonest)[0][1] / 1000 if soonest else None
    return Deadlines(
        due=int(due), oldest_due_age=oldest_due_age, at_risk=int(at_risk or 0),
        oldest_unarchived_age=None if deadline is None else now - (deadline - retention.total_seconds()),
        soonest_deadline_in=None if deadline is None else deadline - now,
    )


class ArchiverCollector(Collector):
    """Builds every metric from Redis on each scrape."""

    def __init__(self, client: redis.Redis, broker: redis.Redis, queue: str, retention: timedelta,
                 prefix: str = DEFAULT_PREFIX, storages: tuple[str, ...] = ()) -> None:
        """`storages`: the configured ones, shown with 0 in every state they have no transfer in."""
        self.redis, self.broker, self.queue, self.retention, self.prefix = client, broker, queue, retention, prefix
        self.storages = storages
        self.stats, self.tally = Stats(client, prefix), Tally(client, prefix)

    def collect(self) -> Iterator[Metric]:
        yield self._transfers()
        yield from self._throughput()
        yield from self._queue()
        yield from self._routing()
        yield from self._webhooks()
        yield from self._stream_api()
        yield self._storages()
        yield from self._reconciliation()

    def _transfers(self) -> Metric:
        gauge = GaugeMetricFamily("archiver_transfers", "Transfers in the ledger by state and storage.",
                                  labels=["state", "storage"])
        for state, storages in self.tally.by_state().items():
            for storage, count in sorted(({name: 0 for name in self.storages} | storages).items()):
                gauge.add_metric([STATE_LABELS[state], storage], count)
        return gauge

    def _throughput(self) -> Iterator[Metric]:
        archived = CounterMetricFamily("archiver_archived_bytes", "Bytes archived and verified.", labels=["storage"])
        for storage, size in sorted(self.stats.bytes_by_storage().items()):
            archived.add_metric([storage], size)
        yield archived
        histogram = HistogramMetricFamily(
            "archiver_transfer_duration_seconds", "Successful transfers: attempt start to archived.",
            labels=["storage"])
        for storage, (buckets, total, _count) in sorted(durations(self.stats).items()):
            histogram.add_metric([storage], buckets, total)
        yield histogram
        for name, key, what in (("archiver_transfer_retries", "stats:retries", "Retries scheduled"),
                                ("archiver_transfer_failures", "stats:failures",
                                 "Permanent failures, and files lost (reason lost)")):
            counter = CounterMetricFamily(name, f"{what}, by storage and reason.", labels=["storage", "reason"])
            for (storage, reason), count in sorted(self.stats.pairs(key).items()):
                counter.add_metric([storage, reason], count)
            yield counter

    def _queue(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("archiver_queue_depth", "Messages waiting in the Celery transfer queue.",
                                value=int(self.broker.llen(self.queue)))
        clocks = read_deadlines(self.redis, self.retention, self.prefix)
        yield GaugeMetricFamily("archiver_due_transfers", "Transfers due and not running (the sweep queues them).",
                                value=clocks.due)
        yield GaugeMetricFamily("archiver_oldest_due_age_seconds", "How long the longest-due transfer has waited.",
                                value=clocks.oldest_due_age)
        yield GaugeMetricFamily("archiver_files_at_risk",
                                "Files within at_risk_margin of deletion and not archived (last reconciliation).",
                                value=clocks.at_risk)
        oldest = GaugeMetricFamily("archiver_oldest_unarchived_age_seconds",
                                   "Seconds since the oldest unarchived recording ended.")
        left = GaugeMetricFamily("archiver_unarchived_deadline_seconds",
                                 "Seconds before Stream deletes the soonest-to-go unarchived file (negative: past).")
        if clocks.oldest_unarchived_age is not None and clocks.soonest_deadline_in is not None:
            oldest.add_metric([], clocks.oldest_unarchived_age)
            left.add_metric([], clocks.soonest_deadline_in)
        yield oldest
        yield left

    def _routing(self) -> Iterator[Metric]:
        figures = read_routing(self.redis, self.prefix)
        gauge = GaugeMetricFamily("archiver_files_routing",
                                  "Files waiting for their routes (call-level routing asks Stream for the call), "
                                  "by reason.", labels=["reason"])
        for reason in REASONS:
            gauge.add_metric([reason], figures.by_reason[reason])
        yield gauge
        yield GaugeMetricFamily("archiver_oldest_routing_age_seconds",
                                "How long the longest-waiting file has waited for its routes (0 when none).",
                                value=figures.oldest_age(time.time()))

    def _webhooks(self) -> Iterator[Metric]:
        counter = CounterMetricFamily("archiver_webhook_requests", "Webhook deliveries by outcome.",
                                      labels=["outcome"])
        for outcome, count in sorted(self.stats.webhooks().items()):
            counter.add_metric([outcome], count)
        yield counter
        last = GaugeMetricFamily("archiver_last_webhook_timestamp_seconds",
                                 "Unix time of the last authenticated webhook.")
        seen = self.stats.last_webhook()
        if seen is not None:
            last.add_metric([], seen)
        yield last

    def _stream_api(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("archiver_stream_requests", "Stream API requests by endpoint and outcome.",
                                       labels=["endpoint", "outcome"])
        for (endpoint, outcome), count in sorted(self.stats.pairs("stats:stream_requests").items()):
            requests.add_metric([endpoint, outcome], count)
        yield requests
        waited = CounterMetricFamily("archiver_stream_rate_limit_wait_seconds",
                                     "Seconds Stream API requests waited for the rate limits, by endpoint.",
                                     labels=["endpoint"])
        for endpoint, seconds in sorted(self.stats.stream_waits().items()):
            waited.add_metric([endpoint], seconds)
        yield waited

    def _storages(self) -> Metric:
        gauge = GaugeMetricFamily("archiver_storage_up", "1 when the storage passed its last check.",
                                  labels=["storage"])
        for name, health in sorted(self.stats.storage_health().items()):
            gauge.add_metric([name], 1 if health.ok else 0)
        return gauge


    def _reconciliation(self) -> Iterator[Metric]:
        marks = read_marks(self.redis, self.prefix)
        last = GaugeMetricFamily("archiver_last_reconcile_timestamp_seconds",
                                 "Unix time the last reconciliation of each mode (incremental, full) completed.",
                                 labels=["mode"])
        failed = GaugeMetricFamily("archiver_reconcile_failed_calls",
                                   "Calls the last completed reconciliation of each mode could not list "
                                   "(the next run lists them again).", labels=["mode"])
        for mode in MODES:
            if mode in marks.completed_at_ms:
                last.add_metric([mode], marks.completed_at_ms[mode] / 1000)
                failed.add_metric([mode], marks.failed_calls.get(mode, 0))
        yield last
        yield failed


def registry_for(collector: ArchiverCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition; raises redis errors (the scrape then fails, as it should)."""
    return generate_latest(registry)
