"""GET /: a plain HTML status page, behind ARCHIVER_STATUS_TOKEN (`worker.edge.web.auth`).

Without a token configured the page does not exist (404). Everything the ledger holds is escaped (a
failure's reason may quote hostile text); the chart's figures travel as JSON in a
``<script type="application/json">`` read by ``/static/status.js``, and the Content-Security-Policy
allows no inline script at all.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from importlib import resources
from typing import cast

import redis

from worker.audit.last import read_last
from worker.audit.model import VERDICTS, AuditSummary
from worker.discovery.reconcile_state import MODES, Marks, read_marks
from worker.ledger.keys import DEFAULT_PREFIX, Keys
from worker.ledger.models import STATES
from worker.ledger.store import Ledger
from worker.ledger.unrouted import RoutingFigures, WaitingFile, read_routing, waiting_files
from worker.monitoring.stats import Health, Stats
from worker.monitoring.tally import STATE_LABELS, Tally

LIMIT = 50  # rows per list: the page stays small whatever the ledger holds
STATIC = {  # name → content type: the only files /static/ serves
    "uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "uPlot.min.css": "text/css; charset=utf-8",
    "status.js": "text/javascript; charset=utf-8",
    "status.css": "text/css; charset=utf-8",
    "uPlot.LICENSE": "text/plain; charset=utf-8",
}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_FIELDS = ("call_cid", "filename", "storage", "state", "error", "reason", "attempts", "updated_at")


def static_file(name: str) -> tuple[bytes, str] | None:
    """A vendored or own static file's bytes and content type; None for any other name."""
    if name not in STATIC:
        return None
    return (resources.files("worker.edge.web") / "static" / name).read_bytes(), STATIC[name]


@dataclass(frozen=True)
class Row:
    """One transfer on the page: its fields as the ledger holds them (strings, unescaped)."""

    id: str
    fields: dict[str, str]
    score: float  # ms: the last update (failures) or the deletion deadline (at risk)


@dataclass(frozen=True)
class Status:
    counts: dict[str, dict[str, int]]  # metric state label → storage → transfers
    by_day: list[tuple[str, int]]
    failures: list[Row]
    at_risk: list[Row]
    health: dict[str, Health]
    now: float
    routing: RoutingFigures
    waiting: tuple[WaitingFile, ...]  # at most LIMIT of the files waiting for their routes
    reconciliation: Marks | None = None
    stream_requests: dict[tuple[str, str], int] = field(default_factory=dict)  # (endpoint, outcome) → requests
    stream_waits: dict[str, float] = field(default_factory=dict)  # endpoint → seconds waited for the limits
    audit: AuditSummary | None = None  # the last completed audit (`worker.audit.last`)


def _rows(client: redis.Redis, keys: Keys, scored: list[tuple[str, float]]) -> list[Row]:
    pipe = client.pipeline(transaction=False)
    for tid, _ in scored:
        pipe.hmget(keys.transfer(tid), list(_FIELDS))
    rows = []
    for (tid, score), values in zip(scored, pipe.execute(), strict=True):
        fields = {k: str(v) for k, v in zip(_FIELDS, values, strict=True) if v}
        rows.append(Row(tid, fields, score))
    return rows


def read_status(client: redis.Redis, at_risk_margin: timedelta, prefix: str = DEFAULT_PREFIX,
                now: float | None = None) -> Status:
    """Everything the page shows, in a bounded number of Redis commands."""
    now = time.time() if now is None else now
    stats, keys = Stats(client, prefix), Keys(prefix)
    failed = cast(list[tuple[str, float]], client.zrevrange(keys.state("failed"), 0, LIMIT - 1, withscores=True))
    queued = cast(list[tuple[str, float]], client.zrevrange(keys.state("queued"), 0, 4 * LIMIT - 1,
                                                            withscores=True))
    erring = [row for row in _rows(client, keys, queued) if row.fields.get("error")]
    failures = sorted([*_rows(client, keys, failed), *erring], key=lambda r: r.score, reverse=True)[:LIMIT]
    horizon = int((now + at_risk_margin.total_seconds()) * 1000)
    soon = cast(list[tuple[str, float]], client.zrangebyscore(keys.expiry, "-inf", horizon, start=0,
                                                              num=LIMIT, withscores=True))
    counts: dict[str, dict[str, int]] = {}
    for state, storages in Tally(client, prefix).by_state().items():
        counts[STATE_LABELS[state]] = storages
    waiting = cast(list[str], client.zrange(keys.unrouted, 0, LIMIT - 1))
    return Status(counts, stats.bytes_by_day(30, now), failures, _rows(client, keys, soon),
                  stats.storage_health(), now, read_routing(client, prefix),
                  tuple(waiting_files(Ledger(client, prefix), waiting)), read_marks(client, prefix),
                  stats.pairs("stats:stream_requests"), stats.stream_waits(), read_last(client, prefix))


# -- rendering --------------------------------------------------------------------------------------

def esc(value: object) -> str:
    return escape(str(value), quote=True)


def when(ms: str | float | None) -> str:
    if ms in (None, ""):
        return ""
    moment = datetime.fromtimestamp(float(ms) / 1000, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _left(seconds: float) -> str:
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    hours, minutes = int(seconds // 3600), int(seconds % 3600 // 60)
    return f"{sign}{hours // 24}d {hours % 24}h {minutes}m" if hours >= 24 else f"{sign}{hours}h {minutes}m"


def _waited(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 60}m {seconds % 60}s"


def table(head: list[str], rows: list[list[str]], empty: str) -> str:
    """`rows` are already escaped cells."""
    if not rows:
        return f'<p class="empty">{esc(empty)}</p>'
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _counts(status: Status) -> str:
    states = [STATE_LABELS[s] for s in STATES]
    storages = sorted({name for per in status.counts.values() for name in per})
    rows = [[esc(name), *(esc(status.counts.get(state, {}).get(name, 0)) for state in states)] for name in storages]
    rows.append(["<strong>all</strong>", *(f"<strong>{sum(status.counts.get(s, {}).values())}</strong>"
                                          for s in states)])
    return table(["storage", *states], rows, "no transfers yet")


def _routing(status: Status) -> str:
    """Files recorded without transfers yet: call-level routing waits for Stream's GetCall."""
    figures = status.routing
    if not figures.total:
        return '<p class="empty">no file waiting for its routes</p>'
    failed, pending = figures.by_reason.get("call_lookup_failed", 0), figures.by_reason.get("call_lookup_pending", 0)
    summary = (f"{figures.total} file(s) wait for Stream's call data to choose their storages: {failed} whose "
               f"call lookup failed (tried again), {pending} not looked up yet; the oldest has waited "
               f"{_waited(figures.oldest_age(status.now))}.")
    rows = []
    for w in status.waiting:
        public = w.to_json()  # its error says why it waits, even before any lookup
        waited = _waited(status.now - w.created_at.timestamp()) if w.created_at else ""
        next_try = when(w.next_attempt_at.timestamp() * 1000) if w.next_attempt_at else ""
        rows.append([esc(waited), esc(w.call_cid), esc(w.filename), esc(w.attempts), esc(next_try), esc(w.reason),
                     f'<span class="error">{esc(public["error"])}</span>'])
    listing = table(["waiting", "call", "file", "failed lookups", "next try", "reason", "why"], rows, "")
    return f'<p id="routing-summary">{esc(summary)}</p>\n{listing}'


def _failures(status: Status) -> str:
    rows = [[esc(when(r.fields.get("updated_at"))), esc(r.fields.get("state", "")), esc(r.fields.get("storage", "")),
             esc(r.fields.get("call_cid", "")), esc(r.fields.get("filename", "")), esc(r.fields.get("reason", "")),
             esc(r.fields.get("attempts", "")), f'<span class="error">{esc(r.fields.get("error", ""))}</span>']
            for r in status.failures]
    return table(["updated", "state", "storage", "call", "file", "reason", "attempts", "error"], rows,
                  "no failures")


def _at_risk(status: Status) -> str:
    rows = [[esc(_left(r.score / 1000 - status.now)), esc(when(r.score)), esc(r.fields.get("state", "")),
             esc(r.fields.get("storage", "")), esc(r.fields.get("call_cid", "")), esc(r.fields.get("filename", ""))]
            for r in status.at_risk]
    return table(["time left", "deleted by Stream at", "state", "storage", "call", "file"], rows,
                  "no file close to its deletion deadline")


def _health(status: Status) -> str:
    rows = [[esc(name), '<span class="ok">up</span>' if h.ok else '<span class="down">down</span>',
             esc(h.reason or ""), esc(when(h.checked_at * 1000))] for name, h in sorted(status.health.items())]
    return table(["storage", "state", "reason", "checked"], rows, "no storage checked yet")


def _reconciliation(status: Status) -> str:
    """When each mode of reconciliation last completed, and the calls it could not list."""
    marks = status.reconciliation
    if marks is None:
        return ""
    rows = [[esc(mode), esc(when(marks.completed_at_ms.get(mode)) or "never"), esc(marks.failed_calls.get(mode, ""))]
            for mode in MODES]
    pending = f"{marks.pending_calls} call(s) wait to be listed again." if marks.pending_calls else ""
    return table(["mode", "last completed", "calls failed"], rows, "") + (f"<p>{esc(pending)}</p>" if pending else "")


def _stream_api(status: Status) -> str:
    """Per endpoint: requests by outcome (ok, gone, rate_limited, …) and seconds waited for the limits."""
    endpoints = sorted({e for e, _ in status.stream_requests} | set(status.stream_waits))
    rows = []
    for endpoint in endpoints:
        outcomes = sorted((o, n) for (e, o), n in status.stream_requests.items() if e == endpoint)
        rows.append([esc(endpoint), esc(", ".join(f"{o} {n:,}" for o, n in outcomes)),
                     esc(f"{status.stream_waits.get(endpoint, 0.0):,.1f}")])
    return table(["endpoint", "requests by outcome", "seconds waited for the rate limit"], rows,
                  "no Stream API request yet")


def _audit(status: Status) -> str:
    """The last audit: when, what it covered, its counts by verdict, and its problems (at most LIMIT)."""
    last = status.audit
    if last is None:
        return '<p class="empty">no audit completed yet (archiver audit, or the scheduler every audit_every)</p>'
    counts = last.counts
    said = (f"Finished {when(last.finished_at.timestamp() * 1000)}: {last.query.describe()}. "
            f"{counts.problems} problem(s); {counts.requeued} object(s) queued again, {counts.recorded} file(s) "
            "recorded that the ledger lacked.")
    verdicts = table(["verdict", "files × destinations"],
                     [[esc(v), esc(counts.verdicts.get(v, 0))] for v in VERDICTS if counts.verdicts.get(v)],
                     "nothing was in scope")
    rows = [[esc(r.verdict), esc(r.storage or ""), esc(r.call_cid), esc(r.filename), esc(r.key or ""),
             f'<span class="error">{esc(r.detail)}</span>'] for r in last.problems[:LIMIT]]
    more = counts.problems - len(rows)
    problems = table(["verdict", "storage", "call", "file", "key", "detail"], rows, "no problem found") + \
        (f"<p>{esc(f'… and {more} more: archiver audit --format html gives them all')}</p>" if more > 0 else "")
    return f'<p id="audit-summary">{esc(said)}</p>\n{verdicts}\n{problems}'


def _chart_data(status: Status) -> str:
    """JSON safe inside a <script> element: no "<", ">" or "&" survives as such."""
    data = {"days": [d for d, _ in status.by_day], "bytes": [b for _, b in status.by_day]}
    raw = json.dumps(data)
    return raw.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(status: Status, call: str = "") -> str:
    """The page; `call` is the searched call's section (`worker.edge.web.call_page`), with its search form."""
    total = sum(b for _, b in status.by_day)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>archiver status</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/uPlot.min.css"><link rel="stylesheet" href="/static/status.css">
</head><body>
<h1>archiver status</h1>
<p class="generated">as of {esc(when(status.now * 1000))}</p>
{call}
<h2>Transfers by state</h2>
{_counts(status)}
<h2>Waiting for routes</h2>
{_routing(status)}
<h2>Bytes archived per day (last 30 days, UTC)</h2>
<p>{esc(f"{total:,}")} bytes in 30 days</p>
<div id="chart"></div>
<script type="application/json" id="bytes-by-day">{_chart_data(status)}</script>
<h2>Storages</h2>
{_health(status)}
<h2>Reconciliation with Stream</h2>
{_reconciliation(status)}
<h2>Stream API requests (shared rate-limit budget: api_share)</h2>
{_stream_api(status)}
<h2>Last audit</h2>
{_audit(status)}
<h2>Files at risk</h2>
{_at_risk(status)}
<h2>Failures</h2>
{_failures(status)}
<script src="/static/uPlot.iife.min.js"></script>
<script src="/static/status.js"></script>
</body></html>
"""
