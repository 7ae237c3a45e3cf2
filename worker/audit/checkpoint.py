"""Where an audit is, kept in Redis so that an interrupted run resumes where it stopped.

An audit named N is four keys (ledger prefix P), each expiring `ttl` after its last write::

  P audit:run:N         STRING JSON {query, phase, pass, cursor, ledger, counts, started_at,
                               finished_at, updated_at}
  P audit:run:N:calls   SET    the calls whose files Stream listed (and were judged)
  P audit:run:N:files   SET    the files judged
  P audit:run:N:rows    LIST   the rows so far (JSON), in the order judged

A call's rows, its files and the position are written in one step (MULTI), as is each batch of the
ledger's files, so a crash repeats at most one call or one batch (its queuing again is harmless: a
transfer already queued is not queued twice). A run with the same query resumes; one with
another query replaces it. The phases: ``stream`` (QueryCalls pages: `pass` and `cursor`), then
``ledger`` (the ``transfers`` index from `ledger`, a `worker.audit.ledger_side.Cursor`), then
``waiting`` (files waiting for their routes), then ``done``: the report can be written from the
rows, and `forget` deletes the keys (the next run checks everything).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any, Literal, cast

import structlog

from worker.audit.ledger_side import Cursor
from worker.audit.model import AuditCounts, AuditQuery, AuditRow
from worker.clock import now_ms
from worker.ledger.store import Ledger

log = structlog.get_logger(__name__)
Phase = Literal["stream", "ledger", "waiting", "done"]
PAGE = 1000


class AuditCheckpoint:
    """One audit's state in Redis (see the module docstring). Raises redis errors."""

    def __init__(self, ledger: Ledger, name: str, query: AuditQuery, ttl_ms: int) -> None:
        if not name:
            raise ValueError("an audit checkpoint needs a name")
        self.ledger, self.redis, self.name, self.query = ledger, ledger.redis, name, query
        self.ttl_ms = max(1, ttl_ms)
        keys = ledger.keys
        self.key, self.calls_key = keys.audit_run(name), keys.audit_calls(name)
        self.files_key, self.rows_key = keys.audit_files(name), keys.audit_rows(name)
        self.counts = AuditCounts()
        self.phase: Phase = "stream"
        self.pass_index = 0
        self.cursor: str | None = None
        self.ledger_cursor = Cursor()
        self.started_at_ms = now_ms()
        self.finished_at_ms: int | None = None
        self.resumed = False

    @classmethod
    def open(cls, ledger: Ledger, name: str, query: AuditQuery, ttl_ms: int) -> AuditCheckpoint:
        """The audit `name` for `query`: resumed when it holds the same query, else new."""
        state = cls(ledger, name, query, ttl_ms)
        saved = load(ledger, name)
        if saved is not None and saved.get("query") == query.to_json():
            state._restore(saved)
        elif saved is not None:
            log.warning("audit_checkpoint_replaced", checkpoint=name, saved_query=saved.get("query"),
                        query=query.to_json())
            state.forget()
        return state

    def _restore(self, saved: dict[str, Any]) -> None:
        self.counts = AuditCounts.from_json(saved.get("counts") or {})
        self.phase = cast(Phase, saved.get("phase") or "stream")
        self.pass_index, self.cursor = int(saved.get("pass") or 0), saved.get("cursor") or None
        self.ledger_cursor = Cursor.from_json(saved.get("ledger"))
        self.started_at_ms = int(saved.get("started_at") or self.started_at_ms)
        self.finished_at_ms = int(saved["finished_at"]) if saved.get("finished_at") else None
        self.resumed = True
        log.info("audit_resumed", checkpoint=self.name, phase=self.phase, files=self.counts.files)

    # -- reading -------------------------------------------------------------------------------

    def unseen_calls(self, cids: Sequence[str]) -> list[str]:
        return self._unseen(self.calls_key, cids)

    def unseen_files(self, fids: Sequence[str]) -> list[str]:
        return self._unseen(self.files_key, fids)

    def _unseen(self, key: str, members: Sequence[str]) -> list[str]:
        if not members:
            return []
        seen = cast(list[Any], self.redis.smismember(key, list(members)))
        return [m for m, hit in zip(members, seen, strict=True) if not int(hit)]

    def listed(self, cid: str) -> bool:
        """Whether this audit listed the call's files at Stream."""
        return bool(self.redis.sismember(self.calls_key, cid))

    def rows(self) -> Iterator[AuditRow]:
        """Every row, in the order judged (read a page at a time)."""
        start = 0
        while True:
            page = cast(list[str], self.redis.lrange(self.rows_key, start, start + PAGE - 1))
            for raw in page:
                yield AuditRow.from_json(json.loads(raw))
            if len(page) < PAGE:
                return
            start += PAGE

    # -- writing -------------------------------------------------------------------------------

    def save(self, rows: Sequence[AuditRow], *, calls: Sequence[str] = (), files: Sequence[str] = ()) -> None:
        """Keep `rows` (judged for `files`, of `calls`) and the position, in one step."""
        self.counts.add(rows)
        pipe = self.redis.pipeline(transaction=True)
        for key, members in ((self.calls_key, calls), (self.files_key, files)):
            if members:
                pipe.sadd(key, *members)
        if rows:
            pipe.rpush(self.rows_key, *(json.dumps(row.to_json(), separators=(",", ":")) for row in rows))
        pipe.set(self.key, json.dumps(self._body()), px=self.ttl_ms)
        for key in (self.calls_key, self.files_key, self.rows_key):
            pipe.pexpire(key, self.ttl_ms)
        pipe.execute()

    def _body(self) -> dict[str, Any]:
        return {"query": self.query.to_json(), "phase": self.phase, "pass": self.pass_index, "cursor": self.cursor,
                "ledger": self.ledger_cursor.to_json(), "counts": self.counts.to_json(),
                "started_at": self.started_at_ms, "finished_at": self.finished_at_ms, "updated_at": now_ms()}

    def finish(self) -> None:
        """Every file is judged: the rows wait for the report."""
        self.phase, self.finished_at_ms = "done", now_ms()
        self.save(())

    def forget(self) -> None:
        drop(self.ledger, self.name)


def drop(ledger: Ledger, name: str) -> bool:
    """Forget the audit `name` (the next run starts over); False when there was none."""
    keys = ledger.keys
    return bool(ledger.redis.delete(keys.audit_run(name), keys.audit_calls(name), keys.audit_files(name),
                                    keys.audit_rows(name)))


def load(ledger: Ledger, name: str) -> dict[str, Any] | None:
    """The saved state of the audit `name` ({} when unreadable), or None when there is none."""
    raw = ledger.redis.get(ledger.keys.audit_run(name))
    if raw is None:
        return None
    try:
        saved = json.loads(cast(str, raw))
    except ValueError:
        log.warning("audit_checkpoint_unreadable", checkpoint=name)
        return {}
    return saved if isinstance(saved, dict) else {}


def saved_query(ledger: Ledger, name: str) -> AuditQuery | None:
    """The query the audit `name` holds (so a command resumes it as it was first resolved), or None."""
    saved = load(ledger, name)
    try:
        return AuditQuery.from_json(saved["query"]) if saved else None
    except (KeyError, TypeError, ValueError):
        return None
