"""Stats reports discovery finds missing: one per session of the files it listed.

Stream lists no stats reports; a session's report is asked for by its id (GetCallReport). The
sessions of a call are the ``session_id``s of the files a run listed for it (recordings,
transcriptions): those sessions have ended. For each one whose report the ledger lacks, Stream is
asked; a report it serves is a file like any other (recorded with its transfers, which fetch it
again), timed like the session's files (its deadline: the latest of them ending, plus
`retention`). A session Stream has no report of (404, or 400 with code 16) is skipped, not failed:
it is asked again by the next run. Any other error of Stream's is the call's listing failing.
Only when ``stats_report`` is in the `kinds` setting.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from worker.discovery.ledger_view import view_files
from worker.errors import StreamRefused
from worker.files import StreamFile, artefact
from worker.runtime import Runtime

log = structlog.get_logger(__name__)
KIND = artefact("stats_report")


def session_reports(runtime: Runtime, call_cid: str, listed: Sequence[StreamFile]) -> list[StreamFile]:
    """The stats reports of the sessions of `listed`: those the ledger knows, and those it lacks
    that Stream serves (see the module docstring). Raises StreamUnavailable, StreamRefused, redis errors."""
    if KIND.name not in runtime.archive.kinds:
        return []
    reports = [_report_of(call_cid, session, listed) for session in sorted({f.session_id for f in listed
                                                                             if f.session_id})]
    known = view_files(runtime.ledger, [r.file_id for r in reports])
    return [r for r in reports if known[r.file_id].known or _served(runtime, r)]


def _report_of(call_cid: str, session_id: str, listed: Sequence[StreamFile]) -> StreamFile:
    """The report of `session_id`, timed like the session's files."""
    files = [f for f in listed if f.session_id == session_id]
    return StreamFile(call_cid=call_cid, kind=KIND.name, filename=KIND.session_filename(session_id), url="",
                      start_time=min(f.start_time for f in files), end_time=max(f.end_time for f in files),
                      session_id=session_id)


def _served(runtime: Runtime, report: StreamFile) -> bool:
    """Whether Stream serves `report` (one GetCallReport); False when it has none for the session."""
    assert KIND.api_source is not None and report.session_id is not None
    try:
        runtime.stream.file_from_api(report.call_cid, KIND.api_source, report.session_id)
    except StreamRefused as exc:
        if not exc.gone:
            raise
        log.info("stats_report_not_found", call_cid=report.call_cid, session_id=report.session_id, error=str(exc))
        return False
    return True
