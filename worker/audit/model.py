"""What an audit works with: its verdicts, its rows, its query, its summary.

One row per file and destination checked, with one verdict:

===================  ===========================================================================
``ok``               archived, and the storage holds an object of the size archived (with
                     ``--deep``: the same SHA-256, read back; a store's own SHA-256 is trusted
                     without ``--deep`` where every rewrite replaces it: S3, GCS, Azure)
``missing``          archived, and the storage has no object at its key
``mismatch``         archived, and the object has another size or SHA-256 (or the ledger kept none)
``unarchived``       Stream holds the file and it is not archived there yet: queued, running,
                     waiting for its routes (storage null), or ``failed`` (the failure in `detail`)
``at_risk``          as ``unarchived``, but Stream deletes the file within ``at_risk_margin``
``lost``             never archived there, and Stream no longer holds the file (the ledger says
                     ``lost``, or the transfer ``failed``/waits and Stream's copy is gone)
``unknown_to_ledger``  Stream lists the file and the ledger never saw it (the audit records and
                     queues it, as a reconciliation would: `detail` says so)
``unchecked``        the storage could not be asked (an error, in `detail`): nothing is proven
===================  ===========================================================================

Problems (exit status 1, the alert, the status page): every verdict but ``ok`` and ``unarchived``.
A route to ``stream-s3`` (left with Stream) is not a destination: it gets no row.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from worker.clock import from_ms, rfc3339, to_ms

Verdict = Literal["ok", "missing", "mismatch", "unarchived", "at_risk", "lost", "unknown_to_ledger", "unchecked"]
VERDICTS: tuple[Verdict, ...] = ("ok", "missing", "mismatch", "unarchived", "at_risk", "lost", "unknown_to_ledger",
                                 "unchecked")
PROBLEMS: tuple[Verdict, ...] = tuple(v for v in VERDICTS if v not in ("ok", "unarchived"))
ROW_FIELDS = ("call_cid", "kind", "filename", "storage", "key", "verdict", "detail")
DEFAULT_SINCE = timedelta(days=14)
PROBLEMS_KEPT = 200  # problems the last audit's summary keeps for the status page (the count is exact)


@dataclass(frozen=True)
class AuditRow:
    """One file at one destination, judged. `storage` and `key` are None when the file has no
    destination in the ledger (waiting for its routes, or unknown to it)."""

    call_cid: str
    kind: str
    filename: str
    storage: str | None
    key: str | None
    verdict: Verdict
    detail: str = ""

    @property
    def problem(self) -> bool:
        return self.verdict in PROBLEMS

    def to_json(self) -> dict[str, Any]:
        """The public shape (`archiver audit --format json`): exactly `ROW_FIELDS`."""
        return {"call_cid": self.call_cid, "kind": self.kind, "filename": self.filename, "storage": self.storage,
                "key": self.key, "verdict": self.verdict, "detail": self.detail}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditRow:
        verdict = data.get("verdict")
        if verdict not in VERDICTS:
            raise ValueError(f"not a verdict: {verdict!r}")
        return cls(str(data.get("call_cid") or ""), str(data.get("kind") or ""), str(data.get("filename") or ""),
                   data.get("storage") or None, data.get("key") or None, cast(Verdict, verdict),
                   str(data.get("detail") or ""))


@dataclass(frozen=True)
class AuditQuery:
    """What an audit covers: the calls Stream lists that ended in [since, until] (and those not
    ended, or reused since), plus every file whose transfers the ledger created in [since, until];
    or, with `calls`, exactly those calls' files, whatever their times. Times are UTC, to the ms."""

    since: datetime
    until: datetime | None = None
    calls: tuple[str, ...] = ()
    deep: bool = False

    @classmethod
    def build(cls, since: datetime, until: datetime | None = None, calls: Collection[str] = (), *,
              deep: bool = False) -> AuditQuery:
        """A normalised query. Raises ValueError for naive times, since after until, or a call that
        is not ``<type>:<id>``."""
        for name, moment in (("since", since), ("until", until)):
            if moment is not None and moment.tzinfo is None:
                raise ValueError(f"{name} must carry a time zone")
        start, end = _ms(since), None if until is None else _ms(until)
        if end is not None and end < start:
            raise ValueError(f"until ({rfc3339(end)}) is before since ({rfc3339(start)})")
        bad = [c for c in calls if not all(c.partition(":")[::2])]
        if bad:
            raise ValueError(f"a call is '<type>:<id>', got {bad[0]!r}")
        return cls(start, end, tuple(sorted(set(calls))), deep)

    def to_json(self) -> dict[str, Any]:
        return {"since": to_ms(self.since), "until": None if self.until is None else to_ms(self.until),
                "calls": list(self.calls), "deep": self.deep}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditQuery:
        """Raises ValueError (or KeyError/TypeError) when `data` is not a query."""
        since, until = from_ms(data["since"]), from_ms(data.get("until"))
        assert since is not None
        return cls.build(since, until, data.get("calls") or (), deep=bool(data.get("deep")))

    def describe(self) -> str:
        """The scope in words, for reports."""
        what = f"calls {', '.join(self.calls)}" if self.calls else \
            f"{rfc3339(self.since)} to {rfc3339(self.until) if self.until else 'now'}"
        return f"{what}; {'deep (every object read back, SHA-256 compared)' if self.deep else 'presence and size'}"


def _ms(moment: datetime) -> datetime:
    return datetime.fromtimestamp(to_ms(moment) / 1000, UTC)


@dataclass
class AuditCounts:
    """Running totals of one audit (kept in its checkpoint)."""

    verdicts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VERDICTS, 0))
    calls_listed: int = 0  # calls whose files Stream listed
    files: int = 0  # files judged
    objects: int = 0  # storage objects checked (each paced by audit_rate)
    requeued: int = 0  # archived transfers queued again (missing or mismatch, Stream still holding the file)
    recorded: int = 0  # files unknown to the ledger, recorded now

    def add(self, rows: Collection[AuditRow]) -> None:
        for row in rows:
            self.verdicts[row.verdict] = self.verdicts.get(row.verdict, 0) + 1

    @property
    def problems(self) -> int:
        return sum(self.verdicts.get(v, 0) for v in PROBLEMS)

    def to_json(self) -> dict[str, Any]:
        return {"verdicts": {v: self.verdicts.get(v, 0) for v in VERDICTS}, "calls_listed": self.calls_listed,
                "files": self.files, "objects": self.objects, "requeued": self.requeued, "recorded": self.recorded}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditCounts:
        verdicts = data.get("verdicts") or {}
        return cls({v: int(verdicts.get(v, 0)) for v in VERDICTS},
                   *(int(data.get(name) or 0) for name in ("calls_listed", "files", "objects", "requeued", "recorded")))


@dataclass(frozen=True)
class AuditSummary:
    """A completed audit: when, what it covered, its counts, and its problems (the first
    `PROBLEMS_KEPT`; `counts` has them all)."""

    started_at: datetime
    finished_at: datetime
    query: AuditQuery
    counts: AuditCounts
    problems: tuple[AuditRow, ...] = ()
    resumed: bool = False

    @property
    def problem_count(self) -> int:
        return self.counts.problems

    def to_json(self) -> dict[str, Any]:
        return {"started_at": to_ms(self.started_at), "finished_at": to_ms(self.finished_at),
                "query": self.query.to_json(), "counts": self.counts.to_json(),
                "problems": [row.to_json() for row in self.problems], "resumed": self.resumed}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditSummary:
        """Raises ValueError / KeyError / TypeError when `data` is not a summary."""
        started, finished = from_ms(data["started_at"]), from_ms(data["finished_at"])
        assert started is not None and finished is not None
        return cls(started, finished, AuditQuery.from_json(data["query"]), AuditCounts.from_json(data["counts"]),
                   tuple(AuditRow.from_json(row) for row in data.get("problems") or ()), bool(data.get("resumed")))
