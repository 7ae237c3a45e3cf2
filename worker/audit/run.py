"""An audit: for every file in scope, what Stream lists, what the ledger says and what each
destination storage holds, compared; one verdict per file and destination (`worker.audit.model`).

Three phases, resumable (`worker.audit.checkpoint`):

1. **stream**: the calls of the window (the QueryCalls passes of a backfill, `worker.discovery.model`,
   or exactly `calls`), each call's files as Stream lists them (the discovery's listing, through the
   shared rate limiter; a stats report as reconciliation finds it). A listed file the ledger never saw
   is ``unknown_to_ledger``: it is recorded and queued at once, as a reconciliation would (it is at
   risk of being lost), and its rows say so. The others are judged with Stream holding them.
2. **ledger**: every file with a transfer created in the window that phase 1 did not judge (older
   than Stream's retention, or of a call outside the window), or, with `calls`, the calls' files.
   Whether Stream still holds such a file is asked only when a verdict depends on it.
3. **waiting**: the files recorded in the window and still waiting for their routes.

Stream's API failing (after the client's retries) stops the run with `StreamUnavailable` /
`StreamRefused`: a listing that failed is never taken for "nothing there". The checkpoint keeps
what was done; the same audit run again resumes. A storage that cannot be read gives its objects
the verdict ``unchecked`` and the run goes on. Storage reads are paced by `audit_rate`.

The transfers queued again (``missing`` and ``mismatch`` whose file Stream holds) and those of the
files recorded are handed to `enqueue` after each call or batch. A completed audit without `calls`
becomes the last audit (`worker.audit.last`), which /metrics and the status page show.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import islice
from typing import Any, Literal

import structlog

from worker.audit.checkpoint import AuditCheckpoint, saved_query
from worker.audit.judge import Judge
from worker.audit.last import keep_last, read_last
from worker.audit.ledger_side import BATCH, created_between, files_of_calls, waiting_between
from worker.audit.model import PROBLEMS_KEPT, AuditCounts, AuditQuery, AuditRow, AuditSummary
from worker.audit.pacing import Pacer
from worker.clock import from_ms, now_ms, to_ms
from worker.discovery.model import PAGE_LIMIT, DiscoveryQuery
from worker.discovery.reports import session_reports
from worker.discovery.run import call_cid_of, list_call_files
from worker.files import LISTED_KINDS, StreamFile
from worker.intake.record import enqueue_quietly, record_routes
from worker.ledger.calls import CallFile, read_files
from worker.ledger.models import Enqueue
from worker.runtime import Runtime
from worker.scheduler import PeriodicJob

log = structlog.get_logger(__name__)
SCHEDULED = "scheduled"  # the scheduler's audit's checkpoint name
FIRST_AUDIT_AFTER = timedelta(minutes=15)  # the scheduler's first audit waits for its reconciliations
EventKind = Literal["resumed", "call", "batch"]
Progress = Callable[[EventKind, AuditCounts], None]
LISTINGS_KEPT = 1000  # calls whose listing phase 2 keeps in memory


@dataclass(frozen=True)
class AuditResult:
    """A completed audit: its summary, and its rows in Redis until `forget`."""

    summary: AuditSummary
    checkpoint: AuditCheckpoint

    def rows(self) -> Iterator[AuditRow]:
        """Every row, in the order judged."""
        return self.checkpoint.rows()

    def problems(self) -> Iterator[AuditRow]:
        return (row for row in self.rows() if row.problem)

    def forget(self) -> None:
        """The report is written: drop the checkpoint, so the next run checks everything."""
        self.checkpoint.forget()


def audit(runtime: Runtime, query: AuditQuery, enqueue: Enqueue, *, name: str, pacer: Pacer | None = None,
          progress: Progress | None = None) -> AuditResult:
    """Run (or resume) the audit `name` of `query`, to completion. Raises StreamUnavailable /
    StreamRefused when Stream's API fails (the checkpoint keeps what was done), redis errors."""
    ttl_ms = int(runtime.archive.retention.total_seconds() * 1000)
    checkpoint = AuditCheckpoint.open(runtime.ledger, name, query, ttl_ms)
    return _Audit(runtime, checkpoint, enqueue, pacer or Pacer(runtime.archive.audit_rate), progress).execute()


class _Audit:
    """One audit run: its phases, its judge, the listings it asked for."""

    def __init__(self, runtime: Runtime, checkpoint: AuditCheckpoint, enqueue: Enqueue, pacer: Pacer,
                 progress: Progress | None) -> None:
        self.runtime, self.checkpoint, self.query = runtime, checkpoint, checkpoint.query
        self.enqueue, self.progress = enqueue, progress
        self.kinds = tuple(k for k in LISTED_KINDS if k in runtime.archive.kinds)
        self.judge = Judge(runtime, pacer, self.query.deep, now_ms(), checkpoint.counts)
        self.recorded: list[str] = []  # transfers (or files to route) recorded, to hand over
        self.listings: dict[str, set[str]] = {}

    def emit(self, what: EventKind) -> None:
        if self.progress is not None:
            self.progress(what, self.checkpoint.counts)

    def execute(self) -> AuditResult:
        cp = self.checkpoint
        log.info("audit_started", checkpoint=cp.name, query=self.query.to_json(), resumed=cp.resumed, phase=cp.phase)
        if cp.resumed:
            self.emit("resumed")
        if cp.phase == "stream":
            self.stream_side()
            cp.phase = "ledger"
        if cp.phase == "ledger":
            self.ledger_side()
            cp.phase = "waiting"
        if cp.phase == "waiting":
            self.save_batch(waiting_between(self.runtime.ledger, *self.window()) if not self.query.calls else [])
            cp.finish()
        summary = self.summary()
        if not self.query.calls:
            keep_last(self.runtime.ledger.redis, self.runtime.ledger.prefix, summary)
        log.info("audit_finished", checkpoint=cp.name, problems=summary.problem_count, **cp.counts.to_json())
        return AuditResult(summary, cp)

    def window(self) -> tuple[int, int | None]:
        return to_ms(self.query.since), None if self.query.until is None else to_ms(self.query.until)

    # -- phase 1: what Stream lists ------------------------------------------------------------

    def stream_side(self) -> None:
        cp = self.checkpoint
        if not self.kinds:
            return  # the `kinds` setting names none Stream lists: the ledger side alone
        passes = DiscoveryQuery.build(self.query.since, self.query.until, (), self.query.calls, self.kinds).passes()
        for index in range(cp.pass_index, len(passes)):
            cursor = cp.cursor if index == cp.pass_index else None
            while True:
                calls, cursor = self.runtime.stream.query_calls(passes[index].filter, sort=passes[index].sort,
                                                                limit=PAGE_LIMIT, cursor=cursor)
                by_cid = {cid: call for call in calls if (cid := call_cid_of(call))}
                for cid in cp.unseen_calls(list(by_cid)):
                    self.list_call(cid, by_cid[cid])
                cp.pass_index, cp.cursor = (index, cursor) if cursor else (index + 1, None)
                cp.save(())
                if cursor is None:
                    break
        if self.query.calls:  # a call QueryCalls did not return: Stream holds none of its files
            cp.save((), calls=self.query.calls)

    def list_call(self, cid: str, call: dict[str, Any]) -> None:
        """Judge every file Stream lists for the call (recording those the ledger lacks)."""
        listed, _ = list_call_files(self.runtime, cid, self.kinds)
        listed += session_reports(self.runtime, cid, listed)
        files = {f.file_id: f for f in listed}
        fresh = self.checkpoint.unseen_files(list(files))
        known = read_files(self.runtime.ledger, fresh)
        rows: list[AuditRow] = []
        for fid in fresh:
            if known[fid].fields.get("call_cid"):
                rows += self.judge.file(known[fid], lambda: True)
            else:
                rows += self.unknown(files[fid], call)
        self.checkpoint.counts.calls_listed += 1
        self.checkpoint.save(rows, calls=[cid], files=fresh)
        self.hand_over()
        self.emit("call")

    def unknown(self, file: StreamFile, call: dict[str, Any]) -> list[AuditRow]:
        """A file Stream lists that the ledger never saw: recorded and queued now."""
        recorded = record_routes(self.runtime.archive, self.runtime.ledger, file, call)
        now = read_files(self.runtime.ledger, [file.file_id])[file.file_id]
        if not recorded.new_file:  # recorded meanwhile (a webhook): an ordinary file
            return self.judge.file(now, lambda: True)
        self.checkpoint.counts.files += 1
        self.checkpoint.counts.recorded += 1
        self.recorded += recorded.to_queue
        log.warning("audit_unknown_to_ledger", call_cid=file.call_cid, kind=file.kind, filename=file.filename,
                    file_id=file.file_id, transfer_ids=recorded.to_queue)
        destinations = [t for t in now.transfers if t.state != "skipped"]
        if not destinations:
            return [AuditRow(file.call_cid, file.kind, file.filename, None, None, "unknown_to_ledger",
                             "recorded now; its routes leave it with Stream (stream-s3)")]
        return [AuditRow(file.call_cid, file.kind, file.filename, t.storage, t.key, "unknown_to_ledger",
                         "recorded now and queued") for t in destinations]

    # -- phase 2: what the ledger holds -----------------------------------------------------------

    def ledger_side(self) -> None:
        if self.query.calls:
            fids = files_of_calls(self.runtime.ledger, self.query.calls)
            for start in range(0, len(fids), BATCH):
                self.save_batch(fids[start:start + BATCH])
            return
        since, until = self.window()
        for fids, cursor in created_between(self.runtime.ledger, since, until, self.checkpoint.ledger_cursor):
            self.checkpoint.ledger_cursor = cursor
            self.save_batch(fids)

    def save_batch(self, fids: Sequence[str]) -> None:
        """Judge the files of `fids` not judged yet, and keep their rows with the position."""
        fresh = self.checkpoint.unseen_files(fids)
        files = read_files(self.runtime.ledger, fresh)
        rows: list[AuditRow] = []
        for fid in fresh:
            if files[fid].fields.get("call_cid"):  # else pruned meanwhile
                rows += self.judge.file(files[fid], partial(self.holds, files[fid]))
        self.checkpoint.save(rows, files=fresh)
        self.hand_over()
        self.emit("batch")

    def holds(self, file: CallFile) -> bool | None:
        """Whether Stream still holds a file phase 1 did not see listed; None when nobody can tell."""
        fields = file.fields
        if fields.get("deleted_from_stream_at"):
            return False
        cid, kind = fields.get("call_cid", ""), fields.get("kind", "")
        if kind not in self.kinds:
            return None  # Stream does not list it (frames, stats reports), or the audit may not ask
        recorded = int(fields.get("created_at") or 0)
        if recorded and recorded < self.checkpoint.started_at_ms and self.checkpoint.listed(cid):
            return False  # this audit listed the call after the file was recorded, and it was not there
        if cid not in self.listings:
            if len(self.listings) >= LISTINGS_KEPT:
                self.listings.clear()
            self.listings[cid] = {f.file_id for f in list_call_files(self.runtime, cid, self.kinds)[0]}
        return file.id in self.listings[cid]

    # -- the end ----------------------------------------------------------------------------------

    def hand_over(self) -> None:
        ids, self.recorded = [*self.recorded, *self.judge.requeued], []
        self.judge.requeued.clear()
        enqueue_quietly(self.enqueue, ids)

    def summary(self) -> AuditSummary:
        cp = self.checkpoint
        problems = tuple(islice((row for row in cp.rows() if row.problem), PROBLEMS_KEPT))
        started, finished = from_ms(cp.started_at_ms), from_ms(cp.finished_at_ms)
        assert started is not None and finished is not None
        return AuditSummary(started, finished, self.query, cp.counts, problems, cp.resumed)


def audit_due(runtime: Runtime, now: datetime | None = None) -> bool:
    """True when the scheduler's audit should run: none completed within `audit_every`, or one
    stopped before completing (its checkpoint is there)."""
    moment = now or datetime.now(UTC)
    ledger = runtime.ledger
    if ledger.redis.exists(ledger.keys.audit_run(SCHEDULED)):
        return True
    last = read_last(ledger.redis, ledger.prefix)
    return last is None or moment - last.finished_at >= runtime.archive.audit_every


def audit_if_due(runtime: Runtime, enqueue: Enqueue, now: datetime | None = None,
                 pacer: Pacer | None = None) -> AuditSummary | None:
    """The scheduler's audit: the last `retention` (what Stream can still hold), deep with
    `audit_deep`; run (or resumed) when `audit_due`. Each problem is logged (``audit_problem``,
    the first `PROBLEMS_KEPT`). Raises what `audit` raises."""
    moment = now or datetime.now(UTC)
    if not audit_due(runtime, moment):
        return None
    deep = runtime.archive.audit_deep
    saved = saved_query(runtime.ledger, SCHEDULED)
    query = saved if saved is not None and saved.deep == deep and not saved.calls else \
        AuditQuery.build(moment - runtime.archive.retention, deep=deep)
    result = audit(runtime, query, enqueue, name=SCHEDULED, pacer=pacer)
    for row in result.summary.problems:
        log.error("audit_problem", **row.to_json())
    result.forget()
    return result.summary


def audit_job(runtime: Runtime, enqueue: Enqueue) -> PeriodicJob:
    """The scheduler's audit: checked every `reconcile_every` (or `audit_every`, when shorter), run
    when `audit_due`. Its first check waits `FIRST_AUDIT_AFTER` (or `audit_every`, when shorter) after
    the scheduler starts, so the reconciliation that runs at start records what webhooks missed first
    (and two long listings of Stream do not start together)."""
    archive = runtime.archive
    every = min(archive.reconcile_every, archive.audit_every).total_seconds()
    first = min(FIRST_AUDIT_AFTER, archive.audit_every).total_seconds()
    return PeriodicJob("audit", every, lambda: audit_if_due(runtime, enqueue), next_at=time.monotonic() + first)
