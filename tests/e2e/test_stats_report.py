"""Stats reports end to end: `call.stats_report_ready` with ``stats_report`` in `kinds` makes the workers
fetch the session's report from Stream's API (GetCallReport) and archive it as
``stats_report_<session_id>.json`` at every destination, byte-identical to what Stream served, verified;
a report whose event was missed is found by `archiver reconcile` from the sessions of the call's listed
recordings, while a session with no report is skipped without failing the run.

Real processes: redis-server, `archiver web`, `archiver worker`, `archiver scheduler`, the fake Stream's
API and webhook sender.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.conftest import Archiver, local_storage
from tests.fakestream.server import FakeStream

pytestmark = pytest.mark.e2e
KINDS = ["recording", "transcription", "stats_report"]


def test_a_reports_event_archives_it_byte_identical_at_two_destinations(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path
) -> None:
    roots = [tmp_path / "one", tmp_path / "two"]
    service = archiver([local_storage(roots[0], "disk"), local_storage(roots[1], "disk2")],
                       default_storage=["disk", "disk2"], kinds=KINDS)
    url = service.start_all()
    report = fake.add_stats_report("default:reported", session_id="sess-1", participants=4)
    assert fake.deliver_event(url, fake.stats_report_event(report)).status_code == 202

    archived = service.wait_for_states(2)
    served = fake.reports_served(report)
    assert len(served) == 2  # one GetCallReport per destination, through the Stream client
    for entry, root in zip(sorted(archived, key=lambda t: t["storage"]), roots, strict=True):
        assert (entry["kind"], entry["filename"], entry["session_id"]) == ("stats_report", "stats_report_sess-1.json",
                                                                          "sess-1")
        assert entry["key"] == "default/reported/stats_report_sess-1.json"
        stored = (root / entry["key"]).read_bytes()
        assert stored in served
        assert (entry["bytes"], entry["sha256"]) == (len(stored), hashlib.sha256(stored).hexdigest())
        assert json.loads(stored)["report"]["participants"]["sum"] == 4


def test_reconcile_finds_a_report_whose_event_was_missed_and_skips_a_session_without_one(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path
) -> None:
    root = tmp_path / "archive"
    ended = datetime.now(UTC) - timedelta(minutes=5)
    fake.add_call("default", "missed", ended_at=ended)
    for session in ("s1", "s2"):
        fake.add_recording("default:missed", session.encode() * 100, session_id=session, end_time=ended,
                           filename=f"rec_{session}.mp4")
    report = fake.add_stats_report("default:missed", session_id="s1")  # its event never arrives; s2 has none
    service = archiver([local_storage(root)], kinds=KINDS)
    service.start_worker()

    result = service.cli("reconcile")
    assert result.returncode == 0, result.stderr
    assert "could not be listed" not in result.stdout
    archived = service.wait_for_states(3)
    (entry,) = [t for t in archived if t["kind"] == "stats_report"]
    assert entry["filename"] == "stats_report_s1.json"
    assert (root / entry["key"]).read_bytes() in fake.reports_served(report)
    asked = [r.query.get("session_id") for r in fake.api_requests if r.path.endswith("/missed/report")]
    assert sorted(set(asked)) == ["s1", "s2"]
