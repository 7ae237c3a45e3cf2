"""Reconciliation: the periodic discovery that catches what webhooks missed, in two modes.

- **incremental** (the default; the scheduler every `reconcile_every`): the calls that ended or
  changed since the watermark less `reconcile_overlap`, and those ongoing; with no watermark yet,
  the last `retention`. Not checkpointed: it is short, and a run that does not complete is
  repeated from the same watermark.
- **full** (``--full``; the scheduler every `full_reconcile_every`): the whole `retention` window,
  soonest to expire first, with calls reused since the window opened. Checkpointed in Redis under
  ``backfill:reconcile-full`` (`worker.discovery.checkpoint`, as `archiver backfill`): a run that
  stopped resumes at its last page, with the window it started with.

A run that completes moves the watermark to its start (`worker.discovery.reconcile_state`); calls whose
listing failed are kept and retried first by the next run, so the watermark does not wait for them.
Then every file close to deletion and not archived is flagged (`flag_at_risk`), and the sessions that
have settled are checked (`worker.sessions.complete`: the complete ones announced).
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from worker.clock import to_ms
from worker.discovery.model import DiscoveryQuery, ReconcileSummary
from worker.discovery.reconcile_state import FailedCalls, Mode, completed, read_marks, watermark_ms
from worker.discovery.run import discover, flag_at_risk, saved_query
from worker.errors import StreamApiError
from worker.ledger.models import Enqueue
from worker.runtime import Runtime
from worker.sessions.complete import complete_settled

log = structlog.get_logger(__name__)
FULL_CHECKPOINT = "reconcile-full"


def window(runtime: Runtime, mode: Mode, now: datetime) -> DiscoveryQuery:
    """What a run of `mode` starting `now` looks at (a stopped full run: the window it started with)."""
    retention = runtime.archive.retention
    if mode == "full":
        saved = saved_query(runtime.ledger, FULL_CHECKPOINT)
        return saved if saved is not None and not saved.incremental else DiscoveryQuery.build(now - retention)
    mark = watermark_ms(runtime.ledger)
    since = now - retention if mark is None else _moment(mark) - runtime.archive.reconcile_overlap
    return DiscoveryQuery.build(max(since, now - retention), incremental=True)


def reconcile(runtime: Runtime, enqueue: Enqueue, *, full: bool = False, now: datetime | None = None,
              ) -> ReconcileSummary:
    """Discover what changed (or, `full`, the whole window), record what is missing, flag what is at
    risk, then hand the new transfers to `enqueue`, soonest to expire first.

    `failed` transfers are left alone. Stream's API failing does not stop the at-risk check: the
    error is logged and returned in `stream_error`, and the watermark stays. Raises redis errors,
    and what `enqueue` raises (what it could not queue is in the ledger: the sweep queues it).
    """
    moment = now or datetime.now(UTC)
    mode: Mode = "full" if full else "incremental"
    query = window(runtime, mode, moment)
    started = min(moment, query.since + runtime.archive.retention) if full else moment  # a resumed run: its start
    discovery, error = None, None
    try:
        discovery = discover(runtime, since=query.since, now=moment, incremental=query.incremental, retry=True,
                             checkpoint=FULL_CHECKPOINT if full else None)
    except StreamApiError as exc:
        error = str(exc)
        log.error("reconcile_discovery_failed", mode=mode, error=error, status=exc.status, code=exc.code)
    if discovery is not None:
        completed(runtime.ledger, mode, to_ms(started), discovery.counts.failed_calls)
    at_risk = flag_at_risk(runtime, moment)
    to_queue = discovery.to_queue if discovery else []
    if to_queue:
        enqueue(to_queue)
    announced = complete_settled(runtime)  # the deliveries of session.archived, if any
    if announced:
        enqueue(announced)
    pending = FailedCalls(runtime.ledger, 0).errors()
    log.info("reconcile_finished", mode=mode, since=query.since.isoformat(), enqueued=len(to_queue),
             at_risk=len(at_risk), stream_error=error, failed_calls=len(pending),
             calls_seen=discovery.counts.calls_seen if discovery else None,
             files_found=discovery.counts.files_found if discovery else None)
    return ReconcileSummary(moment, discovery, len(to_queue), at_risk, error, mode, query.since, pending)


def full_due(runtime: Runtime, now: datetime | None = None) -> bool:
    """True when a full reconciliation is due: none completed within `full_reconcile_every`, or
    one stopped before completing (its checkpoint is there)."""
    moment = now or datetime.now(UTC)
    last = read_marks(runtime.ledger.redis, runtime.ledger.prefix).completed_at_ms.get("full")
    if last is None or runtime.ledger.redis.exists(runtime.ledger.keys.backfill(FULL_CHECKPOINT)):
        return True
    return moment - _moment(last) >= runtime.archive.full_reconcile_every


def reconcile_if_due(runtime: Runtime, enqueue: Enqueue) -> ReconcileSummary | None:
    """The scheduler's full reconciliation: run it when `full_due`, else nothing."""
    return reconcile(runtime, enqueue, full=True) if full_due(runtime) else None


def never_reconciled(runtime: Runtime) -> bool:
    """True before the first completed reconciliation (no watermark)."""
    return watermark_ms(runtime.ledger) is None


def _moment(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
