"""Where a discovery run is: in memory for a one-shot run, in Redis (a checkpoint) for a resumable one.

A checkpoint named N is three keys (ledger prefix P), each expiring `retention` after its last
write (by then Stream has deleted every file the run could still find)::

  P backfill:N         STRING JSON {query, pass, cursor, counts, updated_at}, written after each page
  P backfill:N:calls   SET    the calls listed so far (written in the same step as the page)
  P backfill:N:queue   SET    the transfers recorded so far, handed to the workers when the run ends

A run with the same query finds it and continues at the saved page; a run with another query
replaces it; a finished run deletes it. A crash in the middle of a page repeats that page: the files
it had recorded are then counted as known, and their transfers are already in the queue set.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

import structlog

from worker.clock import now_ms
from worker.discovery.model import DiscoveryCounts, DiscoveryQuery
from worker.ledger.store import Ledger

log = structlog.get_logger(__name__)


class RunState:
    """A run's position (pass, cursor), its counts, the calls it listed and the transfers it queued.
    This base keeps them in memory: nothing is written anywhere."""

    def __init__(self) -> None:
        self.counts = DiscoveryCounts()
        self.pass_index = 0
        self.cursor: str | None = None
        self.resumed = False
        self._calls: set[str] = set()
        self._queue: dict[str, None] = {}

    def unseen(self, cids: Sequence[str]) -> list[str]:
        """The calls of `cids` this run has not listed yet."""
        return [c for c in cids if c not in self._calls]

    def queue(self, ids: Sequence[str]) -> None:
        """Keep transfers to hand to the workers at the end."""
        self._queue.update(dict.fromkeys(ids))

    def save_page(self, pass_index: int, cursor: str | None, cids: Sequence[str]) -> None:
        """A page is done: its calls were listed; the next page is (`pass_index`, `cursor`)."""
        self._calls.update(cids)
        self.pass_index, self.cursor = pass_index, cursor

    def queued_ids(self) -> list[str]:
        return list(self._queue)

    def finish(self) -> None:
        """The run is over: forget it."""


class RedisCheckpoint(RunState):
    """A run kept in Redis under ``backfill:<name>`` (see the module docstring). Raises redis errors."""

    def __init__(self, ledger: Ledger, name: str, query: DiscoveryQuery, ttl_ms: int) -> None:
        super().__init__()
        self.redis, self.name, self.query, self.ttl_ms = ledger.redis, name, query, max(1, ttl_ms)
        self.key, self.calls_key = ledger.keys.backfill(name), ledger.keys.backfill_calls(name)
        self.queue_key = ledger.keys.backfill_queue(name)

    @classmethod
    def open(cls, ledger: Ledger, name: str, query: DiscoveryQuery, ttl_ms: int) -> RedisCheckpoint:
        """The checkpoint `name` for `query`: resumed when it holds the same query, else new."""
        if not name:
            raise ValueError("a checkpoint needs a name")
        state = cls(ledger, name, query, ttl_ms)
        saved = _load(ledger, name)
        if saved is not None and saved.get("query") == query.to_json():
            state._restore(saved)
        elif saved is not None:
            log.warning("backfill_checkpoint_replaced", checkpoint=name, saved_query=saved.get("query"),
                        query=query.to_json())
            state.finish()
        return state

    def _restore(self, saved: dict[str, Any]) -> None:
        self.counts = DiscoveryCounts.from_json(saved.get("counts") or {})
        self.pass_index, self.cursor = int(saved.get("pass") or 0), saved.get("cursor") or None
        self.resumed = True
        log.info("backfill_resumed", checkpoint=self.name, pass_index=self.pass_index, pages=self.counts.pages)

    def unseen(self, cids: Sequence[str]) -> list[str]:
        if not cids:
            return []
        known = cast(list[Any], self.redis.smismember(self.calls_key, list(cids)))
        return [c for c, seen in zip(cids, known, strict=True) if not int(seen)]

    def queue(self, ids: Sequence[str]) -> None:
        if ids:
            pipe = self.redis.pipeline(transaction=True)
            pipe.sadd(self.queue_key, *ids)
            pipe.pexpire(self.queue_key, self.ttl_ms)
            pipe.execute()

    def save_page(self, pass_index: int, cursor: str | None, cids: Sequence[str]) -> None:
        self.pass_index, self.cursor = pass_index, cursor
        body = {"query": self.query.to_json(), "pass": pass_index, "cursor": cursor,
                "counts": self.counts.to_json(), "updated_at": now_ms()}
        pipe = self.redis.pipeline(transaction=True)
        if cids:
            pipe.sadd(self.calls_key, *cids)
        pipe.set(self.key, json.dumps(body), px=self.ttl_ms)
        pipe.pexpire(self.calls_key, self.ttl_ms)
        pipe.pexpire(self.queue_key, self.ttl_ms)
        pipe.execute()

    def queued_ids(self) -> list[str]:
        return sorted(cast(set[str], self.redis.smembers(self.queue_key)))

    def finish(self) -> None:
        self.redis.delete(self.key, self.calls_key, self.queue_key)


def drop_checkpoint(ledger: Ledger, name: str) -> bool:
    """Forget the checkpoint `name` (the next run starts over); False when there was none."""
    keys = ledger.keys
    return bool(ledger.redis.delete(keys.backfill(name), keys.backfill_calls(name), keys.backfill_queue(name)))


def _load(ledger: Ledger, name: str) -> dict[str, Any] | None:
    raw = ledger.redis.get(ledger.keys.backfill(name))
    if raw is None:
        return None
    try:
        saved = json.loads(cast(str, raw))
    except ValueError:
        log.warning("backfill_checkpoint_unreadable", checkpoint=name)
        return {}
    return saved if isinstance(saved, dict) else {}


def saved_query(ledger: Ledger, name: str) -> DiscoveryQuery | None:
    """The query the checkpoint `name` holds (so a command can resume it as it was), or None."""
    saved = _load(ledger, name)
    try:
        return DiscoveryQuery.from_json(saved["query"]) if saved else None
    except (KeyError, TypeError, ValueError):
        return None
