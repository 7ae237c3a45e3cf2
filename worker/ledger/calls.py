"""A call as the ledger knows it: its files (from the ``call_files:<call id>`` index the intake keeps),
each with its transfers, grouped by session; and, once manifests exist, each session's manifest.

A search is a call cid (``type:id``) or an id alone (every call of that id, whatever its type).
Reading is bounded: at most `MAX_FILES` files, in three pipelined round trips.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from worker.ledger.models import ROUTING, Transfer
from worker.ledger.store import Ledger
from worker.ledger.unrouted import waiting_files

MAX_FILES = 1000


@dataclass(frozen=True)
class CallFile:
    """One file of a call and its transfers (none while it waits for its routes)."""

    id: str
    fields: dict[str, str]  # the file's hash, less its signed URL
    transfers: tuple[Transfer, ...]

    @property
    def state(self) -> str:
        return ROUTING if not self.transfers and self.fields.get("routing") == "pending" else ""


@dataclass(frozen=True)
class Manifest:
    """A session's manifest in one storage."""

    storage: str
    key: str
    sha256: str


@dataclass(frozen=True)
class Call:
    query: str
    files: tuple[CallFile, ...]  # ordered by call, session, kind, filename
    more: int = 0  # files of the call left out (over MAX_FILES)

    @property
    def call_cids(self) -> list[str]:
        return sorted({f.fields.get("call_cid", "") for f in self.files})

    def sessions(self) -> dict[tuple[str, str], list[CallFile]]:
        """(call cid, session id or '') → its files."""
        found: dict[tuple[str, str], list[CallFile]] = {}
        for f in self.files:
            found.setdefault((f.fields.get("call_cid", ""), f.fields.get("session_id", "")), []).append(f)
        return found


Head = tuple[str, dict[str, str], list[str]]  # a file's id, its hash, its transfer ids


def read_files(ledger: Ledger, file_ids: Sequence[str]) -> dict[str, CallFile]:
    """Each file of `file_ids` with its transfers (two round trips); a file the ledger lacks has no
    fields (`CallFile.fields` empty) and no transfers. Never the file's signed URL."""
    return {file.id: file for file in _with_transfers(ledger, _heads(ledger, file_ids))}


def _heads(ledger: Ledger, file_ids: Sequence[str]) -> list[Head]:
    pipe = ledger.redis.pipeline(transaction=False)
    for fid in file_ids:
        pipe.hgetall(ledger.keys.file(fid))
        pipe.smembers(ledger.keys.file_transfers(fid))
    answers = pipe.execute()
    return [(fid, cast(dict[str, str], answers[2 * i]), sorted(cast(set[str], answers[2 * i + 1])))
            for i, fid in enumerate(file_ids)]


def _with_transfers(ledger: Ledger, heads: Sequence[Head]) -> list[CallFile]:
    """The files of `heads` with their transfers, by storage (one round trip)."""
    pipe = ledger.redis.pipeline(transaction=False)
    for _, _, tids in heads:
        for tid in tids:
            pipe.hgetall(ledger.keys.transfer(tid))
    hashes = iter(cast(list[dict[str, str]], pipe.execute()))
    result = []
    for fid, fields, tids in heads:
        transfers = [Transfer.from_hash(h) for h in (next(hashes) for _ in tids) if h]
        public = {k: v for k, v in fields.items() if k != "url"}  # a signed URL is a credential
        result.append(CallFile(fid, public, tuple(sorted(transfers, key=lambda t: t.storage))))
    return result


def split_query(query: str) -> tuple[str, str | None]:
    """(call id, call cid or None) of a search: ``default:abc`` → ("abc", "default:abc"); ``abc`` → ("abc", None)."""
    query = query.strip()
    _, sep, call_id = query.partition(":")
    return (call_id, query) if sep else (query, None)


def read_call(ledger: Ledger, query: str, limit: int | None = MAX_FILES) -> Call:
    """The files of the call(s) `query` names, each with its transfers (an unknown call: no files);
    at most `limit` of them (None: all)."""
    call_id, call_cid = split_query(query)
    if not call_id:
        return Call(query.strip(), ())
    file_ids = sorted(cast(set[str], ledger.redis.smembers(ledger.keys.call_files(call_id))))
    files = [f for f in _heads(ledger, file_ids) if f[1] and (call_cid is None or f[1].get("call_cid") == call_cid)]
    files.sort(key=lambda f: (f[1].get("call_cid", ""), f[1].get("session_id", ""), f[1].get("kind", ""),
                              f[1].get("filename", "")))
    kept = files if limit is None else files[:limit]
    more = len(files) - len(kept)
    result = _with_transfers(ledger, kept)
    return Call(query.strip(), tuple(result), more)


def call_rows(ledger: Ledger, query: str, state: str | None = None) -> list[dict[str, Any]]:
    """The rows of `archiver transfers list --call` (`Transfer.to_json`'s shape, and a ``routing`` row
    for each file waiting for its routes), oldest first; only those in `state` when given."""
    call = read_call(ledger, query, limit=None)
    rows = [t.to_json() for f in call.files for t in f.transfers]
    rows += [w.to_json() for w in waiting_files(ledger, [f.id for f in call.files if f.state == ROUTING])]
    return sorted((r for r in rows if state is None or r["state"] == state),
                  key=lambda r: (r["created_at"] or "", r["id"]))


def manifests_of(ledger: Ledger, call_cid: str, session_id: str) -> list[Manifest]:
    """The session's manifest in each storage that holds one, as its ledger record
    (``manifest:<cid>:<sid>``, written by `worker.sessions.manifest`) says; none before the first."""
    record = cast(dict[str, str], ledger.redis.hgetall(ledger.keys.manifest(f"{call_cid}:{session_id}")))
    if not record.get("key"):
        return []
    return [Manifest(storage, record["key"], record.get("sha256", ""))
            for storage in record.get("storages", "").split(",") if storage]


def session_event(call_cid: str, session_id: str) -> tuple[str, str]:
    """The (type, subject) of the ``session.archived`` event about the session, to find it in the
    outbox (`worker.notify.about`): its subject is the session's name, ``<cid>:<sid>``."""
    return "session.archived", f"{call_cid}:{session_id}"
