"""The table of metrics (worker/monitoring/names.py): a scrape exports exactly its metrics, with their types,
help and labels, and docs/monitoring.md documents exactly them, so a metric cannot be half-added."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from config.celery import TRANSFER_QUEUE
from tests.support.ledger_states import add, add_waiting
from worker.audit.last import keep_last
from worker.audit.model import AuditCounts, AuditQuery, AuditSummary
from worker.auditlog import note
from worker.auditlog.export import export_log
from worker.clock import now_ms
from worker.discovery.reconcile_state import completed
from worker.ledger.store import Ledger
from worker.monitoring import names
from worker.monitoring.metrics import ArchiverCollector, registry_for, render
from worker.monitoring.stats import Stats
from worker.storage.local.storage import LocalStorage

DOC = Path(__file__).resolve().parents[3] / "docs" / "monitoring.md"


def a_scrape_with_every_figure(ledger: Ledger, tmp_path: Path) -> str:
    """The text of a scrape of a real registry, after every kind of figure was written."""
    add(ledger, "a", "archived", storages=("s3",))
    add(ledger, "q", "queued", storages=("disk",))
    add_waiting(ledger, "w")
    stats = Stats(ledger.redis)
    stats.archived("s3", 10, 2.0)
    stats.retried("s3", "throttled")
    stats.failed("disk", "lost")
    stats.webhook("accepted")
    stats.file_received("frame_recording")
    stats.stream_request("GET /api/v2/video/call/{type}/{id}", "ok")
    stats.stream_waited("GET /api/v2/video/call/{type}/{id}", 0.5)
    stats.storage_checked("s3", True, None)
    completed(ledger, "full", now_ms(), 0)
    moment = datetime.now(UTC)
    keep_last(ledger.redis, ledger.prefix, AuditSummary(moment, moment, AuditQuery.build(moment), AuditCounts()))
    note(ledger, "hold", call_cid="default:a")
    assert export_log(ledger, LocalStorage("disk", tmp_path))  # the audit log's last export
    collector = ArchiverCollector(ledger.redis, ledger.redis, TRANSFER_QUEUE, timedelta(days=14))
    return render(registry_for(collector)).decode()


def test_a_scrape_exports_exactly_the_tables_metrics_with_their_type_help_and_labels(ledger: Ledger,
                                                                                     tmp_path: Path) -> None:
    text = a_scrape_with_every_figure(ledger, tmp_path)
    exported = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.MULTILINE))
    assert exported == {metric.name: metric.type for metric in names.ALL}
    helps = dict(re.findall(r"^# HELP (\S+) (.*)$", text, flags=re.MULTILINE))
    assert helps == {metric.name: metric.help for metric in names.ALL}
    labels: dict[str, set[tuple[str, ...]]] = {}
    for family in text_string_to_metric_families(text):
        name = f"{family.name}_total" if family.type == "counter" else family.name
        labels[name] = {tuple(sorted(set(sample.labels) - {"le"})) for sample in family.samples}  # sorted as shown
    assert labels == {metric.name: {tuple(sorted(metric.labels))} for metric in names.ALL}  # each has samples


def test_every_name_is_unique_and_well_formed() -> None:
    assert len({metric.name for metric in names.ALL}) == len(names.ALL)
    for metric in names.ALL:
        assert re.fullmatch(r"archiver_[a-z0-9_]+", metric.name)
        assert metric.name.endswith("_total") == (metric.type == "counter"), metric.name
        assert metric.help.endswith(".") and "le" not in metric.labels


def test_docs_monitoring_lists_every_metric_with_its_type_and_labels() -> None:
    """The table under "## Metrics" in docs/monitoring.md: one row per metric, same type and labels."""
    rows = re.findall(r"^\| `(archiver_\w+)` \| (\w+) \|([^|]*)\|", DOC.read_text(), flags=re.MULTILINE)
    documented = {name: (kind, tuple(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}
    assert len(rows) == len(documented)
    assert documented == {metric.name: (metric.type, metric.labels) for metric in names.ALL}
