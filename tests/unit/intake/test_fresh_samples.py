"""The helper that gives tests Stream's samples with fresh times (tests/support/samples.py)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.samples import SAMPLES, fresh_event, fresh_sample, shift_to
from worker.intake.webhook import parse_event, parse_timestamp, ready_file

READY = sorted(p.name for p in SAMPLES.glob("call.*_ready*.json"))
FRACTION = re.compile(r"\.(\d+)")


def times(event: dict[str, object], section: str) -> dict[str, object]:
    inner = event[section]
    assert isinstance(inner, dict)
    return {"created_at": event["created_at"], **{k: inner[k] for k in ("start_time", "end_time")}}


@pytest.mark.parametrize("name", READY)
def test_times_move_to_now_keeping_their_form_and_the_rest_as_it_is(name: str) -> None:
    original = json.loads((SAMPLES / name).read_text())
    section = "call_transcription" if "transcription" in name else "call_recording"
    fresh = fresh_event(name)
    assert list(fresh) == list(original) and list(fresh[section]) == list(original[section])
    assert fresh[section]["filename"] == original[section]["filename"]
    assert fresh[section]["url"] == original[section]["url"]
    old, new = times(original, section), times(fresh, section)
    for field in old:
        assert type(new[field]) is type(old[field]), field
        if isinstance(old[field], str):
            assert FRACTION.findall(str(new[field])) == FRACTION.findall(str(old[field])), field  # same precision
    moved = {f: parse_timestamp(new[f], f) - parse_timestamp(old[f], f) for f in old}
    assert len(set(moved.values())) == 1 and next(iter(moved.values())) % timedelta(seconds=1) == timedelta(0)
    latest = max(parse_timestamp(v, k) for k, v in new.items())
    assert timedelta(0) <= datetime.now(UTC) - latest < timedelta(seconds=5)
    file = ready_file(parse_event(fresh_sample(name)))
    assert file is not None and file.end_time > datetime.now(UTC) - timedelta(hours=2)


def test_shift_to_a_moment_and_the_files_stay_as_published() -> None:
    before = (SAMPLES / "call.recording_ready.json").read_bytes()
    when = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
    event = shift_to(fresh_event("call.recording_ready.json"), when)
    assert parse_timestamp(event["created_at"], "created_at") <= when
    assert when - parse_timestamp(event["created_at"], "created_at") < timedelta(seconds=1)
    assert (SAMPLES / "call.recording_ready.json").read_bytes() == before
