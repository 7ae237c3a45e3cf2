"""Every metric GET /metrics exports, once: its name, type, labels and help text.

The names are a contract: the alert rules (deploy/prometheus/alerts.yml), the dashboards and
docs/monitoring.md (which says what each one means) use them. `worker.monitoring.metrics` builds its
families from this table and a test checks that a scrape exports exactly these, so a metric is added
here first, then filled in there, then documented.

A name is the one the scrape shows: a counter's ends in ``_total``; a histogram's series add
``_bucket`` (with the label ``le``), ``_sum`` and ``_count``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

Type = Literal["gauge", "counter", "histogram"]


@dataclass(frozen=True)
class Metric:
    """One exported metric (its family, in Prometheus' words)."""

    name: str
    help: str
    labels: tuple[str, ...] = ()
    type: ClassVar[Type]


class Gauge(Metric):
    type = "gauge"


class Counter(Metric):
    type = "counter"


class Histogram(Metric):
    type = "histogram"


# Transfers and throughput.
TRANSFERS = Gauge("archiver_transfers", "Transfers in the ledger by state and storage.",
                  ("state", "storage"))  # state: queued, running, archived, failed, skipped, lost
ARCHIVED_BYTES = Counter("archiver_archived_bytes_total", "Bytes archived and verified.", ("storage",))
TRANSFER_DURATION = Histogram("archiver_transfer_duration_seconds",
                              "Successful transfers: attempt start to archived.", ("storage",))
TRANSFER_RETRIES = Counter("archiver_transfer_retries_total", "Retries scheduled, by storage and reason.",
                           ("storage", "reason"))
TRANSFER_FAILURES = Counter("archiver_transfer_failures_total",
                            "Permanent failures, and files lost (reason lost), by storage and reason.",
                            ("storage", "reason"))
# The queue and the ledger's clocks.
QUEUE_DEPTH = Gauge("archiver_queue_depth", "Messages waiting in the Celery transfer queue.")
DUE_TRANSFERS = Gauge("archiver_due_transfers", "Transfers due and not running (the sweep queues them).")
OLDEST_DUE_AGE = Gauge("archiver_oldest_due_age_seconds", "How long the longest-due transfer has waited.")
FILES_AT_RISK = Gauge("archiver_files_at_risk",
                      "Files within at_risk_margin of deletion and not archived (last reconciliation).")
OLDEST_UNARCHIVED_AGE = Gauge("archiver_oldest_unarchived_age_seconds",
                              "Seconds since the oldest unarchived recording ended.")
UNARCHIVED_DEADLINE = Gauge("archiver_unarchived_deadline_seconds",
                            "Seconds before Stream deletes the soonest-to-go unarchived file (negative: past).")
# Files waiting for their routes (call-level routing).
FILES_ROUTING = Gauge("archiver_files_routing",
                      "Files waiting for their routes (call-level routing asks Stream for the call), by reason.",
                      ("reason",))  # call_lookup_pending, call_lookup_failed
OLDEST_ROUTING_AGE = Gauge("archiver_oldest_routing_age_seconds",
                           "How long the longest-waiting file has waited for its routes (0 when none).")
# Webhooks.
WEBHOOK_REQUESTS = Counter("archiver_webhook_requests_total", "Webhook deliveries by outcome.", ("outcome",))
FILES_RECEIVED = Counter("archiver_files_received_total",
                         "Files new to the ledger announced by Stream's events (webhook or SQS), by kind.", ("kind",))
LAST_WEBHOOK = Gauge("archiver_last_webhook_timestamp_seconds", "Unix time of the last authenticated webhook.")
# Stream's API.
STREAM_REQUESTS = Counter("archiver_stream_requests_total", "Stream API requests by endpoint and outcome.",
                          ("endpoint", "outcome"))
STREAM_RATE_LIMIT_WAIT = Counter("archiver_stream_rate_limit_wait_seconds_total",
                                 "Seconds Stream API requests waited for the rate limits, by endpoint.",
                                 ("endpoint",))
# Storages and reconciliation.
STORAGE_UP = Gauge("archiver_storage_up", "1 when the storage passed its last check.", ("storage",))
LAST_RECONCILE = Gauge("archiver_last_reconcile_timestamp_seconds",
                       "Unix time the last reconciliation of each mode (incremental, full) completed.",
                       ("mode",))
RECONCILE_FAILED_CALLS = Gauge("archiver_reconcile_failed_calls",
                               "Calls the last completed reconciliation of each mode could not list "
                               "(the next run lists them again).", ("mode",))
# The last audit (`archiver audit`, and the scheduler's every audit_every).
LAST_AUDIT = Gauge("archiver_audit_last_run_timestamp_seconds",
                   "Unix time the last audit (of a window, not of chosen calls) completed.")
AUDIT_PROBLEMS = Gauge("archiver_audit_problems",
                       "Files × destinations the last audit found a problem with, by verdict.",
                       ("verdict",))  # missing, mismatch, lost, unknown_to_ledger, at_risk, unchecked
# The audit log (worker.auditlog: chained in Redis, exported every audit_log_every).
AUDIT_LOG_ENTRIES = Gauge("archiver_audit_log_entries",
                          "Audit-log entries in Redis not exported yet, by stage (pending: not chained yet; "
                          "chained: sealed, waiting for the next export).", ("stage",))
AUDIT_LOG_SEQ = Gauge("archiver_audit_log_seq", "The seq of the last audit-log entry chained (0: none yet).")
AUDIT_LOG_LAST_EXPORT = Gauge("archiver_audit_log_last_export_timestamp_seconds",
                              "Unix time of the last audit-log export (no sample before the first).")
AUDIT_LOG_OLDEST_AGE = Gauge("archiver_audit_log_oldest_unexported_age_seconds",
                             "How long the oldest audit-log entry not exported yet has waited (0 when none).")
# Notifications ([[notify]]).
NOTIFICATIONS = Counter("archiver_notifications_total",
                        "Notification delivery attempts by outcome (delivered, retried, failed).", ("outcome",))
NOTIFICATIONS_PENDING = Gauge("archiver_notifications_pending",
                              "Notifications not delivered yet and still tried (pending or being delivered).")
NOTIFICATIONS_FAILED = Gauge("archiver_notifications_failed",
                             "Notifications given up on (notify_retry_for passed), until retried by command.")

ALL: tuple[Metric, ...] = (
    TRANSFERS, ARCHIVED_BYTES, TRANSFER_DURATION, TRANSFER_RETRIES, TRANSFER_FAILURES,
    QUEUE_DEPTH, DUE_TRANSFERS, OLDEST_DUE_AGE, FILES_AT_RISK, OLDEST_UNARCHIVED_AGE, UNARCHIVED_DEADLINE,
    FILES_ROUTING, OLDEST_ROUTING_AGE, WEBHOOK_REQUESTS, FILES_RECEIVED, LAST_WEBHOOK, STREAM_REQUESTS,
    STREAM_RATE_LIMIT_WAIT, STORAGE_UP, LAST_RECONCILE, RECONCILE_FAILED_CALLS, LAST_AUDIT, AUDIT_PROBLEMS,
    AUDIT_LOG_ENTRIES, AUDIT_LOG_SEQ, AUDIT_LOG_LAST_EXPORT, AUDIT_LOG_OLDEST_AGE,
    NOTIFICATIONS,
    NOTIFICATIONS_PENDING, NOTIFICATIONS_FAILED,
)
