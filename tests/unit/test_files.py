"""The table of kinds of file (worker/files.py): every kind in it is read from its ready event, noted
from its failure event (when Stream has one), listed and deleted in its own section of Stream's API
(when Stream lists it), and taken back from the ledger; a kind the table does not hold is refused
everywhere, never taken for a recording."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, get_args

import pytest
from structlog.testing import capture_logs

from tests.conftest import API_KEY, API_SECRET
from tests.fakestream.server import FakeStream, StoredFile
from worker.edge.cli.discovery import parse_kinds
from worker.files import (
    ARTEFACT_KINDS,
    KINDS,
    LISTED_KINDS,
    ArtefactKind,
    Kind,
    artefact,
    failed_artefact,
    listing,
    ready_artefact,
)
from worker.intake.record import FailureNoted, note_failure
from worker.intake.resolve import stored_file
from worker.intake.webhook import ready_file
from worker.ledger.store import Ledger
from worker.stream.client import StreamClient

# How the fake Stream makes a file of each kind: a new kind needs one here too.
ADD: dict[Kind, Callable[[FakeStream, str, bytes], StoredFile]] = {
    "recording": lambda fake, cid, body: fake.add_recording(cid, body),
    "transcription": lambda fake, cid, body: fake.add_transcription(cid, body),
    "frame_recording": lambda fake, cid, body: fake.add_frame_recording(cid, body),
}


def ready_event(fake: FakeStream, kind: Kind, cid: str) -> tuple[dict[str, Any], str]:
    """Stream's ready event of a new file of `kind`, and the filename it should be archived under (a
    stats report is no stored file of the fake's CDN: it is a session's report its API serves)."""
    if kind == "stats_report":
        return fake.stats_report_event(fake.add_stats_report(cid, session_id="s-1")), "stats_report_s-1.json"
    stored = ADD[kind](fake, cid, b"x" * 10)
    return fake.event_for(stored), stored.filename
EACH_KIND = pytest.mark.parametrize("kind", ARTEFACT_KINDS, ids=lambda k: k.name)
EACH_FAILING = pytest.mark.parametrize("kind", [k for k in ARTEFACT_KINDS if k.failure_event], ids=lambda k: k.name)
EACH_LISTED = pytest.mark.parametrize("kind", [k for k in ARTEFACT_KINDS if k.api_section], ids=lambda k: k.name)


@pytest.fixture
def client(fake: FakeStream) -> Iterator[StreamClient]:
    stream = StreamClient(fake.base_url, API_KEY, API_SECRET, timeout=5, sleep=lambda _: None)
    yield stream
    stream.close()


def _record(kind: str) -> dict[str, str]:
    return {"call_cid": "default:c", "kind": kind, "filename": "f.mp4", "url": "https://cdn/f.mp4",
            "start_time": "1764237600000", "end_time": "1764237660000"}


def test_the_table_and_the_kind_type_name_the_same_kinds_each_name_once() -> None:
    assert KINDS == get_args(Kind)
    for field in ("name", "ready_event", "failure_event", "payload_key", "api_section", "failed_log_event"):
        names = [getattr(k, field) for k in ARTEFACT_KINDS if getattr(k, field) is not None]
        assert len(set(names)) == len(names), field
    for kind in ARTEFACT_KINDS:  # a failure event is noted and logged under its own name
        assert (kind.failure_event is None) == (kind.failed_log_event is None), kind.name
    assert LISTED_KINDS == ("recording", "transcription")


@EACH_KIND
def test_stream_s_ready_event_for_a_kind_parses_to_that_kind(fake: FakeStream, kind: ArtefactKind) -> None:
    event, filename = ready_event(fake, kind.name, "default:ready")
    assert event["type"] == kind.ready_event and ready_artefact(event["type"]) is kind
    file = ready_file(event)
    assert file is not None and (file.kind, file.filename) == (kind.name, filename)


@EACH_FAILING
def test_a_kind_s_failure_event_is_noted_and_logged_under_its_own_event_name(ledger: Ledger,
                                                                             kind: ArtefactKind) -> None:
    event = {"type": kind.failure_event, "call_cid": "default:broken", "egress_id": "eg-1", "error": "boom"}
    assert failed_artefact(kind.failure_event) is kind
    with capture_logs() as logs:
        assert note_failure(ledger, event) == FailureNoted("default:broken", kind.name)
    assert [e["event"] for e in logs] == [f"stream_{kind.name}_failed"] == [kind.failed_log_event]
    (noted,) = ledger.stream_failures()
    assert noted["kind"] == kind.name


@EACH_LISTED
def test_the_stream_client_lists_and_deletes_a_kind_in_its_own_section(client: StreamClient, fake: FakeStream,
                                                                       kind: ArtefactKind) -> None:
    stored = ADD[kind.name](fake, "default:listed", b"x" * 10)
    (listed,) = client.list_files("default:listed", kind.name)
    assert listed["filename"] == stored.filename
    assert fake.api_requests[-1].path.endswith(f"/{kind.api_section}")
    assert stored.session_id is not None
    client.delete_file("default:listed", kind.name, stored.session_id, stored.filename)
    assert client.list_files("default:listed", kind.name) == []


@EACH_KIND
def test_a_kind_comes_back_from_the_ledger_and_from_the_command_line(kind: ArtefactKind) -> None:
    assert artefact(kind.name) is kind
    assert stored_file(_record(kind.name)).kind == kind.name
    if kind.api_section is None:  # Stream lists none: nothing to backfill or reconcile
        with pytest.raises(ValueError, match="--kinds takes recording, transcription"):
            parse_kinds(kind.name, KINDS)
        with pytest.raises(ValueError, match=f"no listing of {kind.name}"):
            listing(kind.name)
    else:
        assert parse_kinds(kind.name) == parse_kinds(kind.api_section) == (kind.name,)


def test_every_listed_kind_is_the_command_line_s_default_and_only_enabled_kinds_are_taken() -> None:
    assert parse_kinds(",".join(LISTED_KINDS)) == LISTED_KINDS
    assert parse_kinds("recording", ("recording", "frame_recording")) == ("recording",)
    with pytest.raises(ValueError, match=r"--kinds: transcription not enabled \(the configuration's kinds: "
                                         r"recording, frame_recording\)"):
        parse_kinds("recording,transcriptions", ("recording", "frame_recording"))


def test_an_unknown_kind_is_refused_never_taken_for_a_recording() -> None:
    with pytest.raises(ValueError, match="unknown kind of file 'video'"):
        artefact("video")
    with pytest.raises(ValueError, match="'video'"):
        stored_file(_record("video"))
    with pytest.raises(ValueError, match="--kinds"):
        parse_kinds("video")
    assert ready_artefact("call.video_ready") is None and failed_artefact("call.video_failed") is None
    assert ready_file({"type": "call.video_ready", "call_cid": "default:c"}) is None
