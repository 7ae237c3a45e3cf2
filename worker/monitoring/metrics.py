"""GET /metrics: the cluster's figures in Prometheus' text format, read from Redis at scrape time.

Every web replica exposes the same values (they come from the shared Redis, not from the process):
scrape one, or aggregate with max(). What is exported (names, types, labels, help: a contract with the
alert rules) is listed once in `worker.monitoring.names`; docs/monitoring.md says what each one means.
A scrape costs a bounded number of Redis commands (ZCARD, ZCOUNT, HGETALL, LLEN; the split of transfers
by storage is bounded by `worker.monitoring.tally`, and the files waiting for their routes are counted
inside Redis by `worker.ledger.unrouted`).
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

from worker.audit.last import read_last
from worker.audit.model import PROBLEMS
from worker.auditlog.figures import read_figures
from worker.discovery.reconcile_state import MODES, read_marks
from worker.ledger.keys import DEFAULT_PREFIX, Keys
from worker.ledger.unrouted import REASONS, read_routing
from worker.monitoring import names
from worker.monitoring.stats import Stats, durations
from worker.monitoring.tally import STATE_LABELS, Tally
from worker.notify.outbox import OUTCOMES as NOTIFY_OUTCOMES


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


def gauge(metric: names.Gauge, value: float | None = None) -> GaugeMetricFamily:
    """`metric`'s family, with its one `value` when it has no labels and is known now."""
    return GaugeMetricFamily(metric.name, metric.help, value=value, labels=metric.labels or None)


def counter(metric: names.Counter) -> CounterMetricFamily:
    return CounterMetricFamily(metric.name, metric.help, labels=metric.labels)


def histogram(metric: names.Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(metric.name, metric.help, labels=metric.labels)


class ArchiverCollector(Collector):
    """Builds every metric of `worker.monitoring.names` from Redis on each scrape."""

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
        yield from self._audit()
        yield from self._audit_log()
        yield from self._notifications()

    def _notifications(self) -> Iterator[Metric]:
        keys = Keys(self.prefix)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.notify_outcomes)
        for state in ("pending", "delivering", "failed"):
            pipe.zcard(keys.notify_state(state))
        outcomes, pending, delivering, failed = pipe.execute()
        family = counter(names.NOTIFICATIONS)
        for outcome in NOTIFY_OUTCOMES:
            family.add_metric([outcome], int(cast(dict[str, str], outcomes).get(outcome, 0)))
        yield family
        yield gauge(names.NOTIFICATIONS_PENDING, int(pending) + int(delivering))
        yield gauge(names.NOTIFICATIONS_FAILED, int(failed))

    def _transfers(self) -> Metric:
        family = gauge(names.TRANSFERS)
        for state, storages in self.tally.by_state().items():
            for storage, count in sorted(({name: 0 for name in self.storages} | storages).items()):
                family.add_metric([STATE_LABELS[state], storage], count)
        return family

    def _throughput(self) -> Iterator[Metric]:
        archived = counter(names.ARCHIVED_BYTES)
        for storage, size in sorted(self.stats.bytes_by_storage().items()):
            archived.add_metric([storage], size)
        yield archived
        duration = histogram(names.TRANSFER_DURATION)
        for storage, (buckets, total, _count) in sorted(durations(self.stats).items()):
            duration.add_metric([storage], buckets, total)
        yield duration
        for metric, key in ((names.TRANSFER_RETRIES, "stats:retries"), (names.TRANSFER_FAILURES, "stats:failures")):
            family = counter(metric)
            for (storage, reason), count in sorted(self.stats.pairs(key).items()):
                family.add_metric([storage, reason], count)
            yield family

    def _queue(self) -> Iterator[Metric]:
        yield gauge(names.QUEUE_DEPTH, int(self.broker.llen(self.queue)))
        clocks = read_deadlines(self.redis, self.retention, self.prefix)
        yield gauge(names.DUE_TRANSFERS, clocks.due)
        yield gauge(names.OLDEST_DUE_AGE, clocks.oldest_due_age)
        yield gauge(names.FILES_AT_RISK, clocks.at_risk)
        oldest, left = gauge(names.OLDEST_UNARCHIVED_AGE), gauge(names.UNARCHIVED_DEADLINE)
        if clocks.oldest_unarchived_age is not None and clocks.soonest_deadline_in is not None:
            oldest.add_metric([], clocks.oldest_unarchived_age)
            left.add_metric([], clocks.soonest_deadline_in)
        yield oldest
        yield left

    def _routing(self) -> Iterator[Metric]:
        figures = read_routing(self.redis, self.prefix)
        family = gauge(names.FILES_ROUTING)
        for reason in REASONS:
            family.add_metric([reason], figures.by_reason[reason])
        yield family
        yield gauge(names.OLDEST_ROUTING_AGE, figures.oldest_age(time.time()))

    def _webhooks(self) -> Iterator[Metric]:
        requests = counter(names.WEBHOOK_REQUESTS)
        for outcome, count in sorted(self.stats.webhooks().items()):
            requests.add_metric([outcome], count)
        yield requests
        files = counter(names.FILES_RECEIVED)
        for kind, count in sorted(self.stats.files_received().items()):
            files.add_metric([kind], count)
        yield files
        yield gauge(names.LAST_WEBHOOK, self.stats.last_webhook())

    def _stream_api(self) -> Iterator[Metric]:
        requests = counter(names.STREAM_REQUESTS)
        for (endpoint, outcome), count in sorted(self.stats.pairs("stats:stream_requests").items()):
            requests.add_metric([endpoint, outcome], count)
        yield requests
        waited = counter(names.STREAM_RATE_LIMIT_WAIT)
        for endpoint, seconds in sorted(self.stats.stream_waits().items()):
            waited.add_metric([endpoint], seconds)
        yield waited

    def _storages(self) -> Metric:
        family = gauge(names.STORAGE_UP)
        for name, health in sorted(self.stats.storage_health().items()):
            family.add_metric([name], 1 if health.ok else 0)
        return family

    def _reconciliation(self) -> Iterator[Metric]:
        marks = read_marks(self.redis, self.prefix)
        last, failed = gauge(names.LAST_RECONCILE), gauge(names.RECONCILE_FAILED_CALLS)
        for mode in MODES:
            if mode in marks.completed_at_ms:
                last.add_metric([mode], marks.completed_at_ms[mode] / 1000)
                failed.add_metric([mode], marks.failed_calls.get(mode, 0))
        yield last
        yield failed

    def _audit(self) -> Iterator[Metric]:
        """The last audit: when, and its problems by verdict (every problem verdict, 0 when none);
        no sample before the first."""
        last = read_last(self.redis, self.prefix)
        when, problems = gauge(names.LAST_AUDIT), gauge(names.AUDIT_PROBLEMS)
        if last is not None:
            when.add_metric([], last.finished_at.timestamp())
            for verdict in PROBLEMS:
                problems.add_metric([verdict], last.counts.verdicts.get(verdict, 0))
        yield when
        yield problems


    def _audit_log(self) -> Iterator[Metric]:
        figures = read_figures(self.redis, self.prefix)
        entries = gauge(names.AUDIT_LOG_ENTRIES)
        entries.add_metric(["pending"], figures.pending)
        entries.add_metric(["chained"], figures.chained)
        yield entries
        yield gauge(names.AUDIT_LOG_SEQ, figures.seq)
        yield gauge(names.AUDIT_LOG_LAST_EXPORT, figures.last_export_at)
        oldest = figures.oldest_unexported_at
        yield gauge(names.AUDIT_LOG_OLDEST_AGE, 0.0 if oldest is None else max(0.0, time.time() - oldest))


def registry_for(collector: ArchiverCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition; raises redis errors (the scrape then fails, as it should)."""
    return generate_latest(registry)
