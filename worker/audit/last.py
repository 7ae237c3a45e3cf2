"""The last completed audit's summary, where /metrics and the status page read it.

``P audit:last`` is one JSON string (`AuditSummary.to_json`): when the audit started and
finished, what it covered, its counts by verdict, and its first `PROBLEMS_KEPT` problems. Each
completed audit replaces it; an interrupted one leaves the previous in place. Only this module and
`worker.audit.model` are imported by monitoring, so a scrape never loads the audit's machinery.
"""

from __future__ import annotations

import json
from typing import Any, cast

import structlog

from worker.audit.model import AuditSummary
from worker.ledger.keys import Keys

log = structlog.get_logger(__name__)


def keep_last(client: Any, prefix: str, summary: AuditSummary) -> None:
    """Replace the last audit's summary. Raises redis errors."""
    client.set(Keys(prefix).audit_last, json.dumps(summary.to_json()))


def read_last(client: Any, prefix: str) -> AuditSummary | None:
    """The last completed audit's summary; None before the first (or when it cannot be read, logged).
    Raises redis errors."""
    raw = client.get(Keys(prefix).audit_last)
    if raw is None:
        return None
    try:
        return AuditSummary.from_json(json.loads(cast(str | bytes, raw)))
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("audit_last_unreadable", error=str(exc))
        return None
