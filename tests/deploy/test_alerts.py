"""deploy/prometheus/alerts.yml: well-formed rules on the archiver's metrics, each with its runbook section."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy.files import ALERTS, DOCS, load_yaml, markdown_anchors
from worker.monitoring import names

# The contract with the metrics implementation: these names, and no others, exist.
METRICS = {metric.name: metric.type for metric in names.ALL}
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
# The alerts the deployment promises (docs/deployment.md, docs/runbook.md).
EXPECTED = {
    "ArchiverTargetDown",
    "ArchiverTransfersFailed",
    "ArchiverFilesLost",
    "ArchiverFilesAtRisk",
    "ArchiverDeadlineClose",
    "ArchiverQueueStalled",
    "ArchiverRoutingStalled",
    "ArchiverStorageDown",
    "ArchiverRetriesClimbing",
    "ArchiverNoWebhooks",
    "ArchiverFullReconcileOverdue",
    "ArchiverNotificationsFailed",
    "ArchiverAuditFoundProblems",
    "ArchiverAuditLogExportStalled",
}
RULES: list[dict[str, Any]] = [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def metric_names(text: str) -> set[str]:
    return set(re.findall(r"\barchiver_[a-z0-9_]+", text))


def known(name: str) -> bool:
    if name in METRICS:
        return True
    base = next((name.removesuffix(s) for s in HISTOGRAM_SERIES if name.endswith(s)), None)
    return base is not None and METRICS.get(base) == "histogram"


def test_groups_hold_the_promised_alerts_once_each() -> None:
    """Every group has a name and rules; the alerts are exactly the promised ones, no duplicates."""
    groups = load_yaml(ALERTS)["groups"]
    assert groups and all(g["name"] and g["rules"] for g in groups)
    names = [rule["alert"] for rule in RULES]
    assert len(names) == len(set(names))
    assert set(names) == EXPECTED


@pytest.mark.parametrize("rule", RULES, ids=[rule["alert"] for rule in RULES])
def test_rule_is_complete(rule: dict[str, Any]) -> None:
    """expr, for, a severity, and summary, description and runbook_url annotations."""
    assert rule["expr"].strip()
    assert re.fullmatch(r"\d+[smhd]", rule["for"])
    assert rule["labels"]["severity"] in ("warning", "critical")
    assert {"summary", "description", "runbook_url"} <= rule["annotations"].keys()
    expr = rule["expr"]
    assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}")


@pytest.mark.parametrize("rule", RULES, ids=[rule["alert"] for rule in RULES])
def test_rule_uses_only_metrics_that_exist(rule: dict[str, Any]) -> None:
    """Every archiver_* name in the expression and annotations is in the metrics contract."""
    text = rule["expr"] + " ".join(rule["annotations"].values())
    unknown = {name for name in metric_names(text) if not known(name)}
    assert not unknown, f"{rule['alert']}: not archiver metrics: {sorted(unknown)}"
    assert metric_names(rule["expr"]) or re.search(r"\bup\b", rule["expr"])


@pytest.mark.parametrize("rule", RULES, ids=[rule["alert"] for rule in RULES])
def test_runbook_url_points_at_a_runbook_section(rule: dict[str, Any]) -> None:
    """runbook_url is docs/runbook.md#<anchor>, and the runbook has that heading."""
    url = rule["annotations"]["runbook_url"]
    page, _, anchor = url.partition("#")
    assert page.endswith("docs/runbook.md") and anchor, url
    assert anchor in markdown_anchors(DOCS / "runbook.md"), f"docs/runbook.md has no #{anchor}"


def test_every_runbook_section_has_its_alert() -> None:
    """Each alert section of the runbook (## Archiver…) belongs to an alert that exists."""
    sections = re.findall(r"^## (Archiver\w+)", (DOCS / "runbook.md").read_text(), flags=re.MULTILINE)
    assert set(sections) == EXPECTED
