"""The last audit where monitoring reads it (worker/audit/last.py): /metrics' gauges and the status page's
section, over real HTTP with a real Redis; and the scheduler's audit (worker/audit/run.py `audit_if_due`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from tests.fakestream.server import FakeStream
from tests.unit.audit.conftest import Clock, archive, run, seed
from tests.unit.conftest import Receiver
from worker.audit.checkpoint import load
from worker.audit.last import keep_last, read_last
from worker.audit.model import AuditCounts, AuditQuery, AuditRow, AuditSummary
from worker.audit.pacing import Pacer
from worker.audit.run import SCHEDULED, audit_due, audit_if_due, audit_job
from worker.edge.web import paths
from worker.ledger.store import Ledger
from worker.runtime import Runtime

TOKEN = "status-token-0123456789"
HOSTILE = "<script>alert('x')</script>&\"</td></table>"


def summary_with(problems: list[AuditRow], ok: int = 5) -> AuditSummary:
    counts = AuditCounts()
    counts.add(problems)
    counts.verdicts["ok"] = ok
    moment = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    return AuditSummary(moment - timedelta(minutes=3), moment, AuditQuery.build(moment - timedelta(days=14)),
                        counts, tuple(problems))


def test_metrics_show_the_last_audits_time_and_its_problems_by_verdict(
        make_receiver: Callable[..., Receiver], ledger: Ledger) -> None:
    receiver = make_receiver(metrics_cache="0s")

    def samples() -> dict[tuple[str, str], float]:
        text = httpx.get(f"{receiver.base}{paths.METRICS}", timeout=10).text
        return {(s.name, s.labels.get("verdict", "")): s.value for family in text_string_to_metric_families(text)
                for s in family.samples
                if s.name.startswith("archiver_audit_") and not s.name.startswith("archiver_audit_log_")}

    assert samples() == {}  # no sample before the first audit
    missing = AuditRow("default:a", "recording", "a.mp4", "s3", "k/a.mp4", "missing", "no object")
    keep_last(ledger.redis, ledger.prefix, summary_with([missing, missing]))
    assert samples() == {("archiver_audit_last_run_timestamp_seconds", ""): datetime(2026, 3, 1, 12, 0,
                                                                                     tzinfo=UTC).timestamp(),
                         ("archiver_audit_problems", "missing"): 2, ("archiver_audit_problems", "mismatch"): 0,
                         ("archiver_audit_problems", "lost"): 0, ("archiver_audit_problems", "unknown_to_ledger"): 0,
                         ("archiver_audit_problems", "at_risk"): 0, ("archiver_audit_problems", "unchecked"): 0}


def test_the_status_page_shows_the_last_audit_and_its_problems_escaped(
        make_receiver: Callable[..., Receiver], ledger: Ledger) -> None:
    receiver = make_receiver(env={"ARCHIVER_STATUS_TOKEN": TOKEN})

    def section() -> str:
        page = httpx.get(f"{receiver.base}{paths.STATUS}", headers={"Authorization": f"Bearer {TOKEN}"}).text
        return page.split("<h2>Last audit</h2>")[1].split("<h2>")[0]

    assert "no audit completed yet" in section()
    hostile = AuditRow("default:x", "recording", HOSTILE, "disk", HOSTILE, "mismatch", HOSTILE)
    keep_last(ledger.redis, ledger.prefix, summary_with([hostile]))
    shown = section()
    assert "<script>" not in shown and "&lt;script&gt;" in shown
    assert "Finished 2026-03-01 12:00:00 UTC" in shown and "1 problem(s)" in shown
    assert "<td>mismatch</td>" in shown and "<td>ok</td><td>5</td>" in shown


def test_an_unreadable_last_audit_is_none(ledger: Ledger) -> None:
    ledger.redis.set(ledger.keys.audit_last, "{not json")
    assert read_last(ledger.redis, ledger.prefix) is None


def test_the_scheduler_audits_the_retention_window_when_due_resumes_and_logs_each_problem(
        make_runtime: Callable[..., Runtime], fake: FakeStream) -> None:
    runtime = make_runtime("a", call_storage_key="", audit_every="1h", audit_deep=True)
    (one, two) = seed(fake, calls=1, files=2)
    archive(runtime, fake, one)
    clock = Clock()
    pacer = Pacer(100, clock=clock, sleep=clock.sleep)
    assert audit_due(runtime)
    with capture_logs() as logs:
        first = audit_if_due(runtime, [].extend, pacer=pacer)
    assert first is not None and first.query.deep and first.query.since < datetime.now(UTC) - timedelta(days=13.9)
    assert [e["filename"] for e in logs if e["event"] == "audit_problem"] == [two.filename]  # unknown to the ledger
    assert load(runtime.ledger, SCHEDULED) is None  # completed: forgotten
    assert not audit_due(runtime) and audit_if_due(runtime, [].extend, pacer=pacer) is None
    later = datetime.now(UTC) + timedelta(hours=1, minutes=1)
    assert audit_due(runtime, later)
    runtime.ledger.redis.set(runtime.ledger.keys.audit_run(SCHEDULED), "{}")  # a run that stopped half-way
    assert audit_due(runtime)


def test_the_scheduler_waits_before_its_first_audit_and_checks_at_the_shorter_period(
        make_runtime: Callable[..., Runtime]) -> None:
    job = audit_job(make_runtime("a", audit_every="2s", reconcile_every="15m"), [].extend)
    assert job.every == 2 and 1.5 < job.next_at - time.monotonic() <= 2
    job = audit_job(make_runtime("a"), [].extend)  # 24 h, 15 min
    assert job.every == 900 and 899 < job.next_at - time.monotonic() <= 900


def test_an_audit_of_chosen_calls_is_not_the_last_audit(runtime: Runtime, fake: FakeStream) -> None:
    (one,) = seed(fake, calls=1, files=1)
    archive(runtime, fake, one)
    run(runtime, calls=("default:c0",))
    assert read_last(runtime.ledger.redis, runtime.ledger.prefix) is None
    run(runtime, name="window")
    last = read_last(runtime.ledger.redis, runtime.ledger.prefix)
    assert last is not None and last.counts.verdicts["ok"] == 2
