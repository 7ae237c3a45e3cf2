"""Thread-safe in-memory state of the fake Stream: calls, stored files, deletions, request logs."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from tests.fakestream.models import CallRecord, FileKind, StoredFile
from tests.fakestream.reports import SessionReport


@dataclass(frozen=True)
class ApiRequest:
    """One REST request as the fake API saw it (for assertions in tests)."""

    method: str
    path: str  # path without query, as sent (URL-escaped)
    query: dict[str, str]
    headers: dict[str, str] = field(repr=False)  # lower-cased names
    body: bytes = field(repr=False)


@dataclass(frozen=True)
class ApiAnswer:
    """One REST answer the fake API sent: its request's path (without query), status and body bytes."""

    path: str
    status: int
    body: bytes = field(repr=False)


class Store:
    """All mutable state, guarded by one re-entrant lock (servers run one thread per connection)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._calls: dict[str, CallRecord] = {}
        self._files: dict[tuple[str, FileKind, str], StoredFile] = {}
        self._by_path: dict[str, StoredFile] = {}
        self._deleted: set[int] = set()
        self.cdn_requests: list[tuple[str, str, dict[str, str]]] = []
        self.api_requests: list[ApiRequest] = []
        self.api_answers: list[ApiAnswer] = []
        self._downloads: Counter[int] = Counter()
        self._reports: dict[tuple[str, str], SessionReport] = {}

    # ------------------------------------------------------------------ calls

    def put_call(self, call: CallRecord) -> None:
        """Insert or replace a call."""
        with self.lock:
            self._calls[call.cid] = call

    def get_call(self, cid: str) -> CallRecord | None:
        """The call with this cid, or None."""
        with self.lock:
            return self._calls.get(cid)

    def all_calls(self) -> list[CallRecord]:
        """Snapshot of every call."""
        with self.lock:
            return list(self._calls.values())

    # ------------------------------------------------------------------ files

    def has_file(self, call_cid: str, kind: FileKind, filename: str) -> bool:
        """True when a file with this identity was ever added (deleted or not)."""
        with self.lock:
            return (call_cid, kind, filename) in self._files

    def add_file(self, stored: StoredFile) -> None:
        """Register a new file; raise ValueError if its identity is taken."""
        key = (stored.call_cid, stored.kind, stored.filename)
        with self.lock:
            if key in self._files:
                raise ValueError(f"{stored.kind} {stored.filename!r} already exists for {stored.call_cid}")
            self._files[key] = stored
            self._by_path[stored.cdn_path] = stored

    def live_files(self, call_cid: str, kind: FileKind) -> list[StoredFile]:
        """Files of a call that are not deleted, oldest first (then by filename)."""
        with self.lock:
            found = [
                f
                for (cid, k, _), f in self._files.items()
                if cid == call_cid and k == kind and id(f) not in self._deleted
            ]
        return sorted(found, key=lambda f: (f.start_time, f.filename))

    def find_live(self, call_cid: str, kind: FileKind, filename: str) -> StoredFile | None:
        """The live file with this identity, or None."""
        with self.lock:
            stored = self._files.get((call_cid, kind, filename))
            return None if stored is None or id(stored) in self._deleted else stored

    def file_at(self, cdn_path: str) -> StoredFile | None:
        """The live file served at this (escaped) CDN path, or None."""
        with self.lock:
            stored = self._by_path.get(cdn_path)
            return None if stored is None or id(stored) in self._deleted else stored

    def delete(self, stored: StoredFile) -> None:
        """Mark a file deleted (the CDN then answers 404 and the list endpoints skip it)."""
        with self.lock:
            self._deleted.add(id(stored))

    # ------------------------------------------------------------------ stats reports

    def put_report(self, report: SessionReport) -> None:
        """Keep (or replace) the stats report of a session."""
        with self.lock:
            self._reports[(report.call_cid, report.session_id)] = report

    def report(self, call_cid: str, session_id: str) -> SessionReport | None:
        """The stats report of a session, or None."""
        with self.lock:
            return self._reports.get((call_cid, session_id))

    # ------------------------------------------------------------------ logs

    def log_cdn(self, method: str, path: str, headers: dict[str, str]) -> None:
        """Append one CDN request to the log."""
        with self.lock:
            self.cdn_requests.append((method, path, headers))

    def log_api(self, request: ApiRequest) -> None:
        """Append one REST request to the log."""
        with self.lock:
            self.api_requests.append(request)

    def log_answer(self, answer: ApiAnswer) -> None:
        """Append one REST answer to the log."""
        with self.lock:
            self.api_answers.append(answer)

    def count_download(self, stored: StoredFile) -> None:
        """Count a GET of ``stored`` whose body started to be sent."""
        with self.lock:
            self._downloads[id(stored)] += 1

    def downloads_of(self, stored: StoredFile) -> int:
        """How many GETs of ``stored`` started sending a body."""
        with self.lock:
            return self._downloads[id(stored)]
