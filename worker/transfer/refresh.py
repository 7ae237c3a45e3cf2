"""Fresh signed URLs: Stream's CDN links expire (15 minutes and up, ``shared/stream-api.md`` §5), and
ListRecordings / ListTranscriptions sign a new one for every file Stream still keeps.

A fresh URL is remembered in the file's ledger record, so the next attempt and the file's other
destinations start with it instead of a URL known to be dead.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from config.logging import redact_url
from worker.errors import SourceMissing, StreamRefused
from worker.files import artefact
from worker.runtime import Runtime
from worker.transfer.url_guard import check_url

log = structlog.get_logger(__name__)


def fresh_url(runtime: Runtime, file_record: Mapping[str, str]) -> str | None:
    """The URL Stream lists now for the file (same call, kind and filename); None when Stream no
    longer lists it, or no longer has its call. Raises StreamUnavailable, or StreamRefused for any
    other refusal (credentials: an operator must act)."""
    kind = artefact(file_record.get("kind", ""))  # ValueError for a kind this version does not know
    if kind.api_section is None:  # Stream lists no such files (frame recordings): no fresh URL to ask for
        return None
    try:
        items = runtime.stream.list_files(file_record["call_cid"], kind.name)
    except StreamRefused as exc:
        if exc.gone:  # Stream has no such call (any more)
            return None
        raise
    for item in items:
        url = item.get("url")
        if item.get("filename") == file_record["filename"] and isinstance(url, str) and url:
            return url
    return None


def remember_url(runtime: Runtime, file_id: str, url: str) -> None:
    """Store `url` as the file's URL in the ledger (for retries and its other destinations)."""
    runtime.ledger.set_file_url(file_id, url)


class SignedUrl:
    """The current URL of one file, refreshed from Stream when the CDN refuses it."""

    def __init__(self, runtime: Runtime, file_id: str, file_record: Mapping[str, str]) -> None:
        self._runtime, self._file_id, self._record = runtime, file_id, file_record
        self.url = file_record["url"]
        runtime.http.check(self.url)  # download_hosts, or `archiver try`'s one-file permission

    @property
    def filename(self) -> str:
        return self._record["filename"]

    def refresh(self, refused: SourceMissing) -> None:
        """Ask Stream for a fresh URL and remember it. Raises SourceMissing when Stream no longer
        lists the file (its deadline then decides between a retry and `lost`)."""
        url = fresh_url(self._runtime, self._record)
        if url is None:
            raise SourceMissing(f"{refused}; Stream no longer lists {self.filename}") from None
        check_url(url, self._runtime.archive.download_hosts)
        remember_url(self._runtime, self._file_id, url)
        self.url = url
        log.info("download_url_refreshed", url=redact_url(url), reason=str(refused))
