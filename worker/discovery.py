"""Backfill and reconciliation: find every file Stream still holds that the ledger lacks.

Webhooks can be lost (Stream gives up after 15 s), so the archiver also asks Stream: QueryCalls
selects calls (`worker.discovery_model` explains the passes), ListRecordings / ListTranscriptions
list each call's files, and every file the ledger does not know is recorded with its transfers,
routed by the call object QueryCalls returned (no GetCall). Files waiting for their routes are
routed the same way. Nothing else in the ledger is touched: archived, running and ``failed``
transfers stay as they are, so a second run records nothing.

**Soonest to expire first.** The transfers a run records are returned in `DiscoverySummary.to_queue`
ordered by their ``expires_at`` in the ledger (not by discovery order), and `reconcile` hands them
to `enqueue` in that order, so the files closest to deletion are copied first.

Errors: Stream's API failing raises `StreamUnavailable` / `StreamRefused` (with Stream's code and
message) out of `discover`, after its checkpoint kept the last page done; Redis failing raises
redis errors; bad parameters raise ValueError. `reconcile` catches Stream's errors (see it).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import structlog

from worker.discovery_checkpoint import RedisCheckpoint, RunState, drop_checkpoint, saved_query
from worker.discovery_ledger import FileView, at_risk_files, order_by_expiry, publish_at_risk, view_files
from worker.discovery_model import (
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
from worker.errors import MalformedPayload, StreamApiError, StreamRefused
from worker.files import KINDS, Kind, StreamFile
from worker.intake import plan_transfers, record_routes
from worker.ledger import rfc3339, to_ms
from worker.runtime import Runtime
from worker.webhooks import file_from_item

__all__ = [
    "AtRiskFile", "DiscoveryCounts", "DiscoveryEvent", "DiscoveryQuery", "DiscoverySummary",
    "ReconcileSummary", "discover", "drop_checkpoint", "reconcile", "saved_query",
]

log = structlog.get_logger(__name__)
Progress = Callable[[DiscoveryEvent], None]
Enqueue = Callable[[Sequence[str]], None]


def discover(runtime: Runtime, *, since: datetime, until: datetime | None = None,
             call_types: Collection[str] = (), calls: Collection[str] = (), kinds: Collection[Kind] = KINDS,
             dry_run: bool = False, checkpoint: str | None = None, progress: Progress | None = None,
             now: datetime | None = None) -> DiscoverySummary:
    """Find the files of the calls selected, record those the ledger lacks, and count them all.

    `calls` selects exact calls (whatever their times); otherwise calls that ended in [`since`,
    `until`] and calls not ended. `dry_run` writes nothing (no ledger entry, no checkpoint) and
    counts what it would do. `checkpoint` names a resumable run (`worker.discovery_checkpoint`).
    The returned `to_queue` is ordered soonest to expire first. Raises ValueError for bad
    parameters, StreamUnavailable / StreamRefused when Stream's API fails, redis errors.
    """
    query = DiscoveryQuery.build(since, until, call_types, calls, kinds)
    state = _open_state(runtime, query, None if dry_run else checkpoint)
    run = _Run(runtime, query, state, dry_run, progress, now or datetime.now(UTC))
    return run.execute()


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
        self.deadline_ms = to_ms(now + runtime.archive.at_risk_margin)

    @property
    def counts(self) -> DiscoveryCounts:
        return self.state.counts

    def emit(self, what: EventKind, **details: Any) -> None:
        if self.progress is not None:
            self.progress(DiscoveryEvent(what, replace(self.counts), **details))

    def execute(self) -> DiscoverySummary:
        log.info("discovery_started", query=self.query.to_json(), dry_run=self.dry_run, resumed=self.state.resumed)
        if self.state.resumed:
            self.emit("resumed")
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

    def page(self, calls: list[dict[str, Any]]) -> list[str]:
        """List and settle the files of the page's calls not listed before; returns their cids."""
        by_cid = {_cid(call): call for call in calls}
        fresh = self.state.unseen([cid for cid in by_cid if cid])
        for cid in fresh:
            self.settle_call(cid, by_cid[cid])
        return fresh

    def settle_call(self, cid: str, call: Mapping[str, Any]) -> None:
        files = {f.file_id: f for f in self.list_files(cid)}
        views = view_files(self.runtime.ledger, list(files))
        for file_id, file in files.items():
            self.settle_file(file, call, views[file_id])
        self.counts.calls_seen += 1
        self.emit("call", call_cid=cid)

    def list_files(self, cid: str) -> list[StreamFile]:
        found: list[StreamFile] = []
        for kind in self.query.kinds:
            for item in _listed(self.runtime, cid, kind):
                try:
                    found.append(file_from_item(cid, kind, item))
                except MalformedPayload as exc:
                    self.counts.unreadable += 1
                    log.warning("discovered_file_unreadable", call_cid=cid, kind=kind, error=str(exc))
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
        return DiscoverySummary(self.query, self.counts, to_queue, self.dry_run, self.state.resumed)


def _cid(call: Mapping[str, Any]) -> str:
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


def reconcile(runtime: Runtime, enqueue: Enqueue, *, now: datetime | None = None) -> ReconcileSummary:
    """Discover the last `retention` of calls, record what is missing, flag what is at risk, then
    hand the new transfers to `enqueue`, soonest to expire first.

    `failed` transfers are left alone. Stream's API failing does not stop the at-risk check: the
    error is logged and returned in `stream_error`. Raises redis errors, and what `enqueue` raises
    (what it could not queue is in the ledger: the sweep queues it).
    """
    moment = now or datetime.now(UTC)
    discovery, error = None, None
    try:
        discovery = discover(runtime, since=moment - runtime.archive.retention, now=moment)
    except StreamApiError as exc:
        error = str(exc)
        log.error("reconcile_discovery_failed", error=error, status=exc.status, code=exc.code)
    at_risk = flag_at_risk(runtime, moment)
    to_queue = discovery.to_queue if discovery else []
    if to_queue:
        enqueue(to_queue)
    log.info("reconcile_finished", enqueued=len(to_queue), at_risk=len(at_risk), stream_error=error,
             files_found=discovery.counts.files_found if discovery else None)
    return ReconcileSummary(moment, discovery, len(to_queue), at_risk, error)


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
    publish_at_risk(runtime.ledger, len(found), now_ms)
    return found

