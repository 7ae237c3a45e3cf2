"""What discovery works with: the query it runs, the counts it keeps, what it reports.

A discovery query selects calls in QueryCalls passes, run one after the other (each paged with
``limit`` 100 and the ``next`` cursor). Separate passes rather than one ``$or`` (the spec has none)
keep each query to one filter and one of Stream's allowed sorts. A window query (backfill, full
reconciliation) runs four:

1. ``ended``: calls whose ``ended_at`` is in [since, until], oldest first (their files expire first);
2. ``unended``: calls with no ``ended_at`` updated since ``since`` (nobody ended them, or running);
3. ``reused``: calls that ended before ``since`` but were updated since: a call id joined again
   (Stream does not document that ``ended_at`` moves on a new session; ``updated_at`` does);
4. ``ongoing``: calls running now (Stream's ``ongoing``), however long ago they were touched.

An incremental query (``incremental``: what changed since ``since``, the reconciliation watermark
less its overlap) runs three, one per field, whatever the window: ``ended`` (``ended_at`` since),
``updated`` (``updated_at`` since) and ``ongoing``; its cost follows the calls that changed.

With exact calls (``calls``) there is one pass, ``cid $in calls``, whatever their times. A call
type filter (``type $in call_types``) narrows every pass. A call found twice is listed once.
Whatever pass finds a call, each of its files is judged by its own end time (its deletion is
``end_time + retention``), never by the call's ``ended_at``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from worker.clock import from_ms, rfc3339, to_ms
from worker.files import LISTED_KINDS, Kind, StreamFile

Outcome = Literal["new", "known", "archived", "left_with_stream"]
EventKind = Literal["resumed", "page", "call", "file"]
PAGE_LIMIT = 100


@dataclass(frozen=True)
class QueryPass:
    """One QueryCalls query: its name, filter and sort."""

    name: str
    filter: dict[str, Any]
    sort: list[dict[str, Any]]


@dataclass(frozen=True)
class DiscoveryQuery:
    """What a discovery run selects; times are UTC, to the millisecond (as a checkpoint keeps them)."""

    since: datetime
    until: datetime | None = None
    call_types: tuple[str, ...] = ()
    calls: tuple[str, ...] = ()
    kinds: tuple[Kind, ...] = LISTED_KINDS
    incremental: bool = False  # what changed since `since` (see the module docstring)

    @classmethod
    def build(cls, since: datetime, until: datetime | None = None, call_types: Collection[str] = (),
              calls: Collection[str] = (), kinds: Collection[Kind] = LISTED_KINDS, *,
              incremental: bool = False) -> DiscoveryQuery:
        """A normalised query. Raises ValueError for naive times, since after until, no kinds or a
        call that is not ``<type>:<id>``."""
        start, end = _utc_ms(since, "since"), None if until is None else _utc_ms(until, "until")
        if end is not None and end < start:
            raise ValueError(f"until ({rfc3339(end)}) is before since ({rfc3339(start)})")
        wanted = tuple(k for k in LISTED_KINDS if k in set(kinds))
        if not wanted or set(kinds) - set(LISTED_KINDS):
            raise ValueError(f"kinds must be a non-empty subset of {', '.join(LISTED_KINDS)}")
        bad = [c for c in calls if not all(c.partition(":")[::2])]
        if bad:
            raise ValueError(f"a call is '<type>:<id>', got {bad[0]!r}")
        return cls(start, end, tuple(sorted(set(call_types))), tuple(sorted(set(calls))), wanted, incremental)

    def to_json(self) -> dict[str, Any]:
        saved = {"since": to_ms(self.since), "until": None if self.until is None else to_ms(self.until),
                 "call_types": list(self.call_types), "calls": list(self.calls), "kinds": list(self.kinds)}
        return {**saved, "incremental": True} if self.incremental else saved  # older checkpoints stay equal

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DiscoveryQuery:
        """The query a checkpoint holds. Raises ValueError (or KeyError/TypeError) when it is not one."""
        since, until = from_ms(data["since"]), from_ms(data.get("until"))
        assert since is not None
        return cls.build(since, until, data.get("call_types") or (), data.get("calls") or (),
                         data.get("kinds") or LISTED_KINDS, incremental=bool(data.get("incremental")))

    def passes(self) -> list[QueryPass]:
        """The QueryCalls queries to run, in order (see the module docstring)."""
        narrow: dict[str, Any] = {"type": {"$in": list(self.call_types)}} if self.call_types else {}
        if self.calls:
            return [QueryPass("calls", {"cid": {"$in": list(self.calls)}, **narrow}, _ascending("cid"))]
        since = rfc3339(self.since)
        ongoing = QueryPass("ongoing", {"ongoing": {"$eq": True}, **narrow}, _ascending("created_at"))
        if self.incremental:
            return [QueryPass("ended", {"ended_at": {"$gte": since}, **narrow}, _ascending("ended_at")),
                    QueryPass("updated", {"updated_at": {"$gte": since}, **narrow}, _ascending("updated_at")),
                    ongoing]
        ended: dict[str, Any] = {"$gte": since}
        if self.until is not None:
            ended["$lte"] = rfc3339(self.until)
        return [
            QueryPass("ended", {"ended_at": ended, **narrow}, _ascending("ended_at")),
            QueryPass("unended", {"ended_at": {"$exists": False}, "updated_at": {"$gte": since}, **narrow},
                      _ascending("created_at")),
            QueryPass("reused", {"ended_at": {"$lt": since}, "updated_at": {"$gte": since}, **narrow},
                      _ascending("updated_at")),
            ongoing,
        ]


def _ascending(name: str) -> list[dict[str, Any]]:
    return [{"field": name, "direction": 1}]


def _utc_ms(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{name} must carry a time zone")
    return datetime.fromtimestamp(to_ms(moment) / 1000, UTC)


@dataclass
class DiscoveryCounts:
    """Running totals of one discovery run (kept in its checkpoint). Every file found is exactly one
    of: already archived, known (in the ledger, not archived), new, or left with Stream."""

    pages: int = 0
    calls_seen: int = 0  # distinct calls whose files were listed
    files_found: int = 0  # files Stream holds for those calls (of the kinds asked for)
    already_archived: int = 0  # every transfer of the file is archived
    known_not_archived: int = 0  # in the ledger, some transfer not archived (queued, failed, lost…) or unrouted
    new_files: int = 0  # not in the ledger before this run: recorded now (or, dry run, would be)
    left_with_stream: int = 0  # every route says stream-s3: nothing to copy
    queued: int = 0  # transfers this run queued (or, dry run, would queue)
    at_risk: int = 0  # not archived, and Stream deletes it within at_risk_margin (or already should have)
    bytes_archived: int = 0  # bytes of the archived transfers of these files
    unreadable: int = 0  # items Stream listed that are not a valid file (logged, skipped)
    failed_calls: int = 0  # calls whose listing failed (kept to retry: `worker.discovery.reconcile_state`)

    def count(self, outcome: Outcome, *, at_risk: bool, archived_bytes: int) -> None:
        """Add one file found."""
        self.files_found += 1
        self.bytes_archived += archived_bytes
        self.at_risk += at_risk
        if outcome == "new":
            self.new_files += 1
        elif outcome == "known":
            self.known_not_archived += 1
        elif outcome == "archived":
            self.already_archived += 1
        else:
            self.left_with_stream += 1

    def to_json(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DiscoveryCounts:
        names = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in data.items() if k in names})


@dataclass(frozen=True)
class DiscoveryEvent:
    """Progress of a run: ``resumed`` (from a checkpoint), ``file`` (one file settled), ``call``
    (one call's files done), ``page`` (one QueryCalls page done and checkpointed)."""

    what: EventKind
    counts: DiscoveryCounts  # a snapshot
    call_cid: str | None = None
    file: StreamFile | None = None
    outcome: Outcome | None = None
    storages: tuple[str, ...] = ()  # new files: the storages it is (or would be) queued for
    at_risk: bool = False


@dataclass(frozen=True)
class DiscoverySummary:
    """A finished run. `to_queue`: the transfers it recorded, soonest to expire first (empty on a
    dry run): hand them to the workers in this order."""

    query: DiscoveryQuery
    counts: DiscoveryCounts
    to_queue: list[str] = field(default_factory=list)
    dry_run: bool = False
    resumed: bool = False
    failed: dict[str, str] = field(default_factory=dict)  # calls this process could not list → error


@dataclass(frozen=True)
class AtRiskFile:
    """A file not archived yet that Stream deletes within the at-risk margin."""

    file_id: str
    call_cid: str
    kind: str
    filename: str
    storages: tuple[str, ...]  # where it still has to go; () while its routes are not known
    state: str  # queued | transferring | routing (waiting for its routes)
    expires_at: datetime
    time_left: timedelta  # negative: past the deadline already
    transfer_ids: tuple[str, ...] = ()  # its unfinished transfers (none while its routes are not known)


@dataclass(frozen=True)
class ReconcileSummary:
    """One reconcile: its discovery (None when Stream's API failed: `stream_error` says how), how
    many transfers it handed to the workers, and the files at risk in the whole ledger.
    `failed_calls`: every call waiting to be listed again (this run's failures and older ones) →
    its last error."""

    computed_at: datetime
    discovery: DiscoverySummary | None
    enqueued: int
    at_risk: list[AtRiskFile]
    stream_error: str | None = None
    mode: str = "full"
    since: datetime | None = None
    failed_calls: dict[str, str] = field(default_factory=dict)


def format_span(span: timedelta) -> str:
    """A time left as ``31h05m`` (``-2h10m`` when past)."""
    seconds = span.total_seconds()
    hours, minutes = divmod(int(abs(seconds)) // 60, 60)
    return f"{'-' if seconds < 0 else ''}{hours}h{minutes:02d}m"
