"""`archiver find`: the archived files that a call, a call type, a time range, custom terms and a kind
select, newest first, read from the index (`worker.ledger.index`).

How a search runs: of the filters that have an index (the call, the call type, each custom term),
the one with the fewest files in the time range drives: a call's set (``call_files``: a call has
few files), or a sorted set counted within the range (ZCOUNT). With none of them, the days of the
range do (``index:days``, newest first). The driver's files are read newest first a page at a time
(the pages grow from `FIRST_PAGE` to `MAX_PAGE` files), each page in two round trips: its ids, then
one script (`worker.ledger.scripts.FIND_PAGE`) giving each file's call cid, kind, custom terms and
archived transfers as one JSON string (parsing Redis's replies is what costs most here). Every other
filter is checked on those (call cid, kind, custom terms). Only transfers in state ``archived`` are returned,
one per storage that holds the file, so one file may give several. Reading stops once enough are
found: a limit keeps a day of many files, or the whole ledger, fast.

The time range is the file's start (``start_time``): `FindQuery.since_ms` included, `until_ms` not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import cast

import redis

from worker.clock import from_ms
from worker.ledger import scripts as lua
from worker.ledger.calls import split_query
from worker.ledger.models import Transfer
from worker.ledger.store import Ledger

DAY_MS = 86_400_000
FIRST_PAGE = 128  # files read first: enough for the default limit of 100 archived transfers
MAX_PAGE = 2048
Page = list[tuple[str, float]]  # (file id, its start in ms), newest first


@dataclass(frozen=True)
class FindQuery:
    """What to find; every filter given must hold (they intersect)."""

    call: str | None = None  # a call cid (type:id), or a call id alone (every call of that id)
    call_type: str | None = None
    since_ms: int | None = None  # files that started at or after this (ms)
    until_ms: int | None = None  # …and before this (ms)
    custom: tuple[str, ...] = ()  # "key=value" terms of the call's custom data (`worker.ledger.index`)
    kind: str | None = None


@dataclass(frozen=True)
class Match:
    """One archived transfer found, with its file's start (what orders the results)."""

    transfer: Transfer
    started_at: datetime


@dataclass(frozen=True)
class Found:
    matches: tuple[Match, ...]  # newest first
    more: bool  # more archived transfers match than the limit let through


def find(ledger: Ledger, query: FindQuery, limit: int | None = 100) -> Found:
    """The first `limit` archived transfers `query` selects, newest first (None: all of them)."""
    taken = list(islice(iter_matches(ledger, query), None if limit is None else limit + 1))
    more = limit is not None and len(taken) > limit
    return Found(tuple(taken[:limit] if more else taken), more)


def iter_matches(ledger: Ledger, query: FindQuery) -> Iterator[Match]:
    """Every archived transfer `query` selects, newest first, read lazily a page at a time."""
    for page in _driver(ledger, query):
        yield from _matches(ledger, query, page)


# -- the driver: the smallest index the query names ---------------------------------------------


def _bounds(query: FindQuery) -> tuple[str, str]:
    """(min, max) of a Redis score range for the query's times (max excluded)."""
    low = "-inf" if query.since_ms is None else str(query.since_ms)
    return low, "+inf" if query.until_ms is None else f"({query.until_ms}"


def _driver(ledger: Ledger, query: FindQuery) -> Iterator[Page]:
    keys, low, high = ledger.keys, *_bounds(query)
    if query.since_ms is not None and query.until_ms is not None and query.since_ms >= query.until_ms:
        return
    sorted_sets = ([keys.index_type(query.call_type)] if query.call_type else []) + \
        [keys.index_custom(term) for term in query.custom]
    pipe = ledger.redis.pipeline(transaction=False)
    if query.call:
        pipe.scard(keys.call_files(split_query(query.call)[0]))
    for key in sorted_sets:
        pipe.zcount(key, low, high)
    sizes = cast(list[int], pipe.execute())
    if not sizes:
        yield from _day_pages(ledger, query)
        return
    smallest = min(range(len(sizes)), key=sizes.__getitem__)
    if sizes[smallest] == 0:
        return
    if query.call and smallest == 0:
        yield from _call_pages(ledger, query)
    else:
        yield from _zset_pages(ledger.redis, sorted_sets[smallest - bool(query.call)], low, high)


def _zset_pages(client: redis.Redis, key: str, low: str, high: str) -> Iterator[Page]:
    """A sorted set's members in [low, high], newest first, in growing pages. Each page starts at the
    last one's score (members of equal score are skipped by count), so a deep page costs no more than
    the first."""
    top, skip, size = high, 0, FIRST_PAGE
    while True:
        page = cast(Page, client.zrevrangebyscore(key, top, low, start=skip, num=size, withscores=True))
        if page:
            yield page
        if len(page) < size:
            return
        last = page[-1][1]
        ties = sum(1 for _, score in page if score == last)
        skip = skip + ties if top == str(int(last)) else ties
        top, size = str(int(last)), min(size * 4, MAX_PAGE)


def _day_pages(ledger: Ledger, query: FindQuery) -> Iterator[Page]:
    """The files of each day of the range (every day indexed, without one), newest first."""
    low, high = _bounds(query)
    first = "-inf" if query.since_ms is None else f"({query.since_ms - DAY_MS}"  # the day holding since_ms
    days = cast(list[str], ledger.redis.zrevrangebyscore(ledger.keys.index_days, high, first))
    for day in days:
        yield from _zset_pages(ledger.redis, ledger.keys.index_day(day), low, high)


def _call_pages(ledger: Ledger, query: FindQuery) -> Iterator[Page]:
    """The files of the call's set within the range, newest first (a call has few: read at once)."""
    assert query.call
    file_ids = sorted(cast(set[str], ledger.redis.smembers(ledger.keys.call_files(split_query(query.call)[0]))))
    pipe = ledger.redis.pipeline(transaction=False)
    for fid in file_ids:
        pipe.hmget(ledger.keys.file(fid), ["start_time", "created_at"])
    low = float("-inf") if query.since_ms is None else query.since_ms
    high = float("inf") if query.until_ms is None else query.until_ms
    times = [start or created for start, created in cast(list[list[str | None]], pipe.execute())]
    files = [(fid, float(at)) for fid, at in zip(file_ids, times, strict=True) if at]
    files = sorted(((fid, at) for fid, at in files if low <= at < high), key=lambda f: (f[1], f[0]), reverse=True)
    for start in range(0, len(files), MAX_PAGE):
        yield files[start:start + MAX_PAGE]


# -- a page's archived transfers ------------------------------------------------------------------


def _selected(query: FindQuery, call_cid: str, kind: str, custom: str | None) -> bool:
    """Whether a file (its hash's call cid, kind and custom terms) passes every filter of `query`."""
    call_type, _, call_id = call_cid.partition(":")
    if query.call:
        wanted_id, wanted_cid = split_query(query.call)
        if call_cid != wanted_cid if wanted_cid else call_id != wanted_id:
            return False
    if (query.call_type and call_type != query.call_type) or (query.kind and kind != query.kind):
        return False
    return not query.custom or set(query.custom) <= set(json.loads(custom or "[]"))


def _matches(ledger: Ledger, query: FindQuery, page: Sequence[tuple[str, float]]) -> Iterator[Match]:
    """The page's archived transfers that pass the filters, newest file first (one round trip)."""
    script = ledger.redis.register_script(lua.FIND_PAGE)
    answers = cast(list[str], script(args=[ledger.prefix, *(fid for fid, _ in page)])) if page else []
    for (_, at), answer in zip(page, answers, strict=True):
        call_cid, kind, custom, archived = json.loads(answer)
        if not archived or not _selected(query, call_cid, kind, custom or None):
            continue
        started = from_ms(int(at))
        assert started is not None
        transfers = [Transfer.from_hash(dict(zip(flat[::2], flat[1::2], strict=True))) for flat in archived]
        for transfer in sorted(transfers, key=lambda t: t.storage):
            yield Match(transfer, started)
