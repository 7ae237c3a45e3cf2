"""Object keys from the template (worker/keys.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker.files import StreamFile, transfer_id
from worker.keys import MAX_SEGMENT_BYTES, object_key, safe_segment

T = datetime(2026, 11, 1, tzinfo=UTC)


def file(call_cid: str = "default:abc", filename: str = "rec.mp4", session_id: str | None = "s1") -> StreamFile:
    return StreamFile(call_cid=call_cid, kind="recording", filename=filename, url="https://x/y",
                      start_time=T, end_time=T, session_id=session_id)


def test_the_default_template_gives_type_id_filename() -> None:
    assert object_key("{call_type}/{call_id}/{filename}", file()) == "default/abc/rec.mp4"


@pytest.mark.parametrize(
    ("call_cid", "filename"),
    [("default:../../etc", "passwd"), ("..:..", ".."), ("a:b", "../../x.mp4"), ("a:/abs", "/etc/passwd"),
     ("a:b", "x\\..\\..\\y"), ("a:b", "nul\0byte"), ("a:b", "."), ("a:b", "new\nline")],
)
def test_no_value_can_climb_out_of_its_segment(call_cid: str, filename: str) -> None:
    key = object_key("{call_type}/{call_id}/{filename}", file(call_cid, filename))
    segments = key.split("/")
    assert len(segments) == 3
    assert all(s not in ("", ".", "..") and "\\" not in s and "\0" not in s for s in segments)
    assert not key.startswith("/")


def test_keys_are_deterministic_and_long_names_stay_distinct() -> None:
    a, b = "x" * 10_000 + "a", "x" * 10_000 + "b"
    assert safe_segment(a) == safe_segment(a)
    assert safe_segment(a) != safe_segment(b)
    assert len(safe_segment(a).encode()) <= MAX_SEGMENT_BYTES


def test_missing_session_id_has_a_stable_placeholder() -> None:
    assert object_key("{session_id}/{filename}", file(session_id=None)) == "no-session/rec.mp4"


def test_identity_ignores_session_and_url() -> None:
    one, other = file(session_id="a"), file(session_id=None)
    assert one.file_id == other.file_id
    assert transfer_id(one.file_id, "s3") != transfer_id(one.file_id, "local")
    assert file(filename="other.mp4").file_id != one.file_id
