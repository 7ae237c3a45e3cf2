"""Backfill and reconciliation: find every file Stream still holds that the ledger lacks.

Webhooks can be lost (Stream gives up after 15 s), so the archiver also asks Stream: QueryCalls
selects calls (`worker.discovery.model` explains the passes), ListRecordings / ListTranscriptions
list each call's files, and every file the ledger does not know is recorded with its transfers,
routed by the call object QueryCalls returned (no GetCall); with ``stats_report`` enabled, so is
each listed session's stats report Stream serves (`worker.discovery.reports`). Files waiting for their routes are
routed the same way. Nothing else in the ledger is touched: archived, running and ``failed``
transfers stay as they are, so a second run records nothing; but every listed file the ledger
holds is indexed by its call's custom data (`archiver find`, `worker.ledger.index`).

**One call failing does not stop a run.** A call whose listing fails (Stream unavailable after
the client's retries, or refused) is counted in ``failed_calls``, logged (``discovery_call_failed``),
and kept with its call object in ``reconcile:failed`` (`worker.discovery.reconcile_state`); a reconciliation
(``retry``) lists those calls again first. Only `MAX_FAILED_IN_A_ROW` calls failing one after the
other (Stream is down, not one call) ends the run with the last error.

**Soonest to expire first.** The transfers a run records are returned in `DiscoverySummary.to_queue`
ordered by their ``expires_at`` in the ledger (not by discovery order), and `reconcile` hands them
to `enqueue` in that order, so the files closest to deletion are copied first.

Errors: Stream's API failing raises `StreamUnavailable` / `StreamRefused` (with Stream's code and
message) out of `discover`, after its checkpoint kept the last page done; Redis failing raises
redis errors; bad parameters raise ValueError. `worker.discovery.reconcile` catches Stream's errors.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import structlog

from worker.clock import rfc3339, to_ms
from worker.discovery.checkpoint import RedisCheckpoint, RunState, drop_checkpoint, saved_query
from worker.discovery.ledger_view import FileView, at_risk_files, order_by_expiry, publish_at_risk, view_files
from worker.discovery.model import (
    PAGE_LIMIT,
    AtRiskFile,
    DiscoveryCounts,
    DiscoveryEvent,
    DiscoveryQuery,
    DiscoverySummary,
    EventKind,
    Outcome,
    QueryPass,
    ReconcileSummary,
    format_span,
)
from worker.discovery.reconcile_state import FailedCalls
from worker.discovery.reports import session_reports
from worker.errors import MalformedPayload, StreamApiError, StreamRefused
from worker.files import LISTED_KINDS, Kind, StreamFile
from worker.intake.record import plan_transfers, record_routes
from worker.intake.webhook import file_from_item
from worker.ledger.index import index_known
from worker.runtime import Runtime
from worker.sessions.complete import note_listing

__all__ = [
    "AtRiskFile", "DiscoveryCounts", "DiscoveryEvent", "DiscoveryQuery", "DiscoverySummary",
    "ReconcileSummary", "call_cid_of", "discover", "drop_checkpoint", "list_call_files", "saved_query",
]

log = structlog.get_logger(__name__)
Progress = Callable[[DiscoveryEvent], None]
MAX_FAILED_IN_A_ROW = 5  # this many calls failing one after the other: Stream is down, the run stops


def discover(runtime: Runtime, *, since: datetime, until: datetime | None = None,
             call_types: Collection[str] = (), calls: Collection[str] = (), kinds: Collection[Kind] = LISTED_KINDS,
             dry_run: bool = False, checkpoint: str | None = None, progress: Progress | None = None,
             now: datetime | None = None, incremental: bool = False, retry: bool = False) -> DiscoverySummary:
    """Find the files of the calls selected, record those the ledger lacks, and count them all.

    `calls` selects exact calls (whatever their times); otherwise calls that ended in [`since`,
    `until`], calls not ended and calls reused since `since`; `incremental`: the calls that ended
    or changed since `since`, and those ongoing (`worker.discovery.model`). `retry` lists the calls
    that failed in earlier runs first. `dry_run` writes nothing (no ledger entry, no checkpoint,
    no failed call kept) and counts what it would do. `checkpoint` names a resumable run
    (`worker.discovery.checkpoint`). The returned `to_queue` is ordered soonest to expire first.
    Raises ValueError for bad parameters, StreamUnavailable / StreamRefused when Stream's API
    fails (QueryCalls, or `MAX_FAILED_IN_A_ROW` calls in a row), redis errors.
    """
    query = DiscoveryQuery.build(since, until, call_types, calls, kinds, incremental=incremental)
    state = _open_state(runtime, query, None if dry_run else checkpoint)
    run = _Run(runtime, query, state, dry_run, progress, now or datetime.now(UTC))
    return run.execute(retry=retry and not dry_run)


def _open_state(runtime: Runtime, query: DiscoveryQuery, checkpoint: str | None) -> RunState:
    if checkpoint is None:
        return RunState()
    ttl_ms = int(runtime.archive.retention.total_seconds() * 1000)
    return RedisCheckpoint.open(runtime.ledger, checkpoint, query, ttl_ms)


class _Run:
    """One discovery run: pages of calls → each call's files → each file settled and counted."""

    def __init__(self, runtime: Runtime, query: DiscoveryQuery, state: RunState, dry_run: bool,
                 progress: Progress | None, now: datetime) -> None:
        self.runtime, self.query, self.state, self.dry_run = runtime, query, state, dry_run
        self.progress = progress
        self.now = now  # when the run started: its listings were made later
        self.deadline_ms = to_ms(now + runtime.archive.at_risk_margin)
        self.failures = FailedCalls(runtime.ledger, int(runtime.archive.retention.total_seconds() * 1000))
        self.failed: dict[str, str] = {}
        self.in_a_row = 0
        self.pending: set[str] = set()  # calls failed before this run
        self.retried: set[str] = set()

    @property
    def counts(self) -> DiscoveryCounts:
        return self.state.counts

    def emit(self, what: EventKind, **details: Any) -> None:
        if self.progress is not None:
            self.progress(DiscoveryEvent(what, replace(self.counts), **details))

    def execute(self, *, retry: bool) -> DiscoverySummary:
        log.info("discovery_started", query=self.query.to_json(), dry_run=self.dry_run, resumed=self.state.resumed)
        if self.state.resumed:
            self.emit("resumed")
        if retry:
            self.retry_failed()
        passes = self.query.passes()
        for index in range(self.state.pass_index, len(passes)):
            self.run_pass(index, passes[index], self.state.cursor if index == self.state.pass_index else None)
        return self.finish()

    def run_pass(self, index: int, query: QueryPass, cursor: str | None) -> None:
        """Page through one query from `cursor`, checkpointing after every page."""
        while True:
            calls, cursor = self.runtime.stream.query_calls(query.filter, sort=query.sort, limit=PAGE_LIMIT,
                                                            cursor=cursor)
            cids = self.page(calls)
            self.counts.pages += 1
            self.state.save_page(index if cursor else index + 1, cursor, cids)
            self.emit("page")
            if cursor is None:
                return

    def retry_failed(self) -> None:
        """List again the calls earlier runs could not list (with the call objects kept then). After
        `MAX_FAILED_IN_A_ROW` failures in a row the rest wait for the next run (the least tried first)."""
        due = self.failures.due()
        self.pending = {cid for cid, _, _ in due}
        if due:
            log.info("discovery_retrying_failed_calls", count=len(due))
        settled: list[str] = []
        for cid, call, _ in due:
            if self.in_a_row >= MAX_FAILED_IN_A_ROW:
                break
            if call and self.settle_call(cid, call, stop_on_failures=False):
                settled.append(cid)
        self.failures.settled(settled)
        self.retried, self.in_a_row = set(settled), 0

    def page(self, calls: list[dict[str, Any]]) -> list[str]:
        """List and settle the files of the page's calls not listed before; returns their cids."""
        by_cid = {call_cid_of(call): call for call in calls}
        fresh = self.state.unseen([cid for cid in by_cid if cid and cid not in self.retried])
        settled = [cid for cid in fresh if self.settle_call(cid, by_cid[cid])]
        self.failures.settled([cid for cid in settled if cid in self.pending])
        return fresh

    def settle_call(self, cid: str, call: Mapping[str, Any], *, stop_on_failures: bool = True) -> bool:
        """List and settle the call's files; False when its listing failed (kept to retry)."""
        try:
            listed = self.list_files(cid)
            listed += session_reports(self.runtime, cid, listed)
        except StreamApiError as exc:
            self.call_failed(cid, call, exc)
            if stop_on_failures and self.in_a_row >= MAX_FAILED_IN_A_ROW:
                raise
            return False
        self.in_a_row = 0
        files = {f.file_id: f for f in listed}
        views = view_files(self.runtime.ledger, list(files))
        for file_id, file in files.items():
            self.settle_file(file, call, views[file_id])
        if not self.dry_run:  # the call's custom data, for `archiver find`: new files got it when recorded
            index_known(self.runtime.ledger, [fid for fid, view in views.items() if view.known], call)
            note_listing(self.runtime, cid, call, listed, [fid for fid, view in views.items() if not view.known],
                         self.now)
        self.counts.calls_seen += 1
        self.emit("call", call_cid=cid)
        return True

    def call_failed(self, cid: str, call: Mapping[str, Any], exc: StreamApiError) -> None:
        """Count, log and keep a call whose listing failed."""
        self.in_a_row += 1
        self.counts.failed_calls += 1
        self.failed[cid] = str(exc)
        log.warning("discovery_call_failed", call_cid=cid, error=str(exc), status=exc.status, code=exc.code)
        if not self.dry_run:
            self.failures.add(cid, call, str(exc))

    def list_files(self, cid: str) -> list[StreamFile]:
        found, unreadable = list_call_files(self.runtime, cid, self.query.kinds)
        self.counts.unreadable += unreadable
        return found

    def settle_file(self, file: StreamFile, call: Mapping[str, Any], view: FileView) -> None:
        """Record `file` if the ledger lacks it (or its routes), then count it."""
        storages: tuple[str, ...] = ()
        if view.known and not view.routing_pending:
            outcome = _known_outcome(view.states)
        else:
            outcome, storages = self.record(file, call, known=view.known)
        expires_ms = view.expires_at_ms or to_ms(file.expires_at(self.runtime.archive.retention))
        at_risk = outcome in ("new", "known") and expires_ms <= self.deadline_ms
        self.counts.count(outcome, at_risk=at_risk, archived_bytes=view.archived_bytes)
        self.emit("file", call_cid=file.call_cid, file=file, outcome=outcome, storages=storages, at_risk=at_risk)

    def record(self, file: StreamFile, call: Mapping[str, Any], *, known: bool) -> tuple[Outcome, tuple[str, ...]]:
        """Record the file with its transfers (dry run: only plan them); its outcome and storages."""
        archive = self.runtime.archive
        storages = tuple(t.storage for t in plan_transfers(archive, file, call) if t.state == "queued")
        queued = len(storages)
        if not self.dry_run:
            recorded = record_routes(archive, self.runtime.ledger, file, call)
            self.state.queue(recorded.to_queue)
            known, queued = known or not recorded.new_file, len(recorded.to_queue)
            log.info("file_discovered", call_cid=file.call_cid, kind=file.kind, filename=file.filename,
                     file_id=file.file_id, transfer_ids=recorded.to_queue)
        self.counts.queued += queued
        if not storages:
            return "left_with_stream", ()
        return ("known" if known else "new"), storages

    def finish(self) -> DiscoverySummary:
        to_queue: list[str] = []
        if not self.dry_run:
            to_queue = order_by_expiry(self.runtime.ledger, self.state.queued_ids())
            self.counts.queued = len(to_queue)
        self.state.finish()
        log.info("discovery_finished", dry_run=self.dry_run, **self.counts.to_json())
        return DiscoverySummary(self.query, self.counts, to_queue, self.dry_run, self.state.resumed, self.failed)


def list_call_files(runtime: Runtime, cid: str, kinds: Collection[Kind]) -> tuple[list[StreamFile], int]:
    """The files Stream lists for the call, of `kinds` that the `kinds` setting enables (a call
    Stream no longer has: none), and how many items were unreadable (logged, skipped). Raises
    StreamUnavailable / StreamRefused."""
    found: list[StreamFile] = []
    unreadable = 0
    for kind in (k for k in kinds if k in runtime.archive.kinds):  # enabled ones only
        for item in _listed(runtime, cid, kind):
            try:
                found.append(file_from_item(cid, kind, item))
            except MalformedPayload as exc:
                unreadable += 1
                log.warning("discovered_file_unreadable", call_cid=cid, kind=kind, error=str(exc))
    return found, unreadable


def call_cid_of(call: Mapping[str, Any]) -> str:
    """A QueryCalls call object's cid (``type:id``); "" when it has none."""
    cid = call.get("cid")
    if isinstance(cid, str) and cid:
        return cid
    call_type, call_id = call.get("type"), call.get("id")
    return f"{call_type}:{call_id}" if isinstance(call_type, str) and isinstance(call_id, str) else ""


def _listed(runtime: Runtime, cid: str, kind: Kind) -> list[dict[str, Any]]:
    """The call's files of `kind`; none when Stream no longer has the call (404, or 400 code 16)."""
    try:
        return runtime.stream.list_files(cid, kind)
    except StreamRefused as exc:
        if not exc.gone:
            raise
        log.warning("discovered_call_gone", call_cid=cid, kind=kind, error=str(exc))
        return []


def _known_outcome(states: Sequence[str]) -> Outcome:
    """A known file: archived when every transfer is (routes to stream-s3 aside), left with Stream
    when every route says so, else known and not archived."""
    if states and all(s == "skipped" for s in states):
        return "left_with_stream"
    if states and all(s in ("archived", "skipped") for s in states):
        return "archived"
    return "known"


def flag_at_risk(runtime: Runtime, now: datetime) -> list[AtRiskFile]:
    """Log one ``recording_at_risk`` error per file Stream deletes within `at_risk_margin` that is
    not archived (queued, transferring, or waiting for its routes), and publish their count in
    Redis (``archiver:at_risk``, ``archiver:at_risk_at`` in ms). Raises redis errors."""
    now_ms = to_ms(now)
    found = at_risk_files(runtime.ledger, to_ms(now + runtime.archive.at_risk_margin), now_ms)
    for file in found:
        log.error("recording_at_risk", call_cid=file.call_cid, kind=file.kind, filename=file.filename,
                  file_id=file.file_id, storage=",".join(file.storages) or "(routing pending)", state=file.state,
                  expires_at=rfc3339(file.expires_at), time_left=format_span(file.time_left),
                  time_left_s=int(file.time_left.total_seconds()))
    publish_at_risk(runtime.ledger, len(found), now_ms, [tid for file in found for tid in file.transfer_ids])
    return found

