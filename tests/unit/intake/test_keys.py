"""Object keys from the template (worker/intake/object_keys.py)."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.fakestream.models import default_filename
from worker.files import StreamFile, transfer_id
from worker.intake.object_keys import MAX_SEGMENT_BYTES, object_key, safe_segment
from worker.intake.webhook import ready_file

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


DEFAULT = "{call_type}/{call_id}/{filename}"
TWINS = [
    ("default:abc", "caf\u00e9.mp4", "default:abc", "cafe\u0301.mp4"),  # NFC / NFD
    ("default:abc", "rec_a\\b.mp4", "default:abc", "rec_a_b.mp4"),  # backslash / underscore
    ("default:abc", "rec.mp4", "default:abc", " rec.mp4"),  # leading space
    ("default:abc", "%2e%2e", "default:abc", "__2e_2e"),  # encoded dots / their escaped form
    ("default:a/b", "rec.mp4", "default:a_b", "rec.mp4"),  # call ids a/b / a_b
    ("default:abc", "rec.", "default:abc", "rec_"),  # trailing dot (Azure) / its escaped form
    ("default:abc", "x" * 300, "default:abc", safe_segment("x" * 300)),  # cut long name / its cut form
    ("default:abc", "%2e%2e", "default:abc", safe_segment("%2e%2e")),  # tagged form given as a name
]


@pytest.mark.parametrize(("cid_a", "name_a", "cid_b", "name_b"), TWINS)
def test_distinct_names_give_distinct_keys(cid_a: str, name_a: str, cid_b: str, name_b: str) -> None:
    """Two files whose values clean to the same text still get two keys: the changed one is tagged."""
    assert object_key(DEFAULT, file(cid_a, name_a)) != object_key(DEFAULT, file(cid_b, name_b))


def test_a_changed_name_carries_a_hash_of_the_original_before_its_extension() -> None:
    """`rec_a\\b.mp4` becomes `rec_a_b~h<8 hex>.mp4`, the hash of the name as Stream gave it."""
    tag = hashlib.sha256(b"rec_a\\b.mp4").hexdigest()[:8]
    assert safe_segment("rec_a\\b.mp4") == f"rec_a_b~h{tag}.mp4"
    assert re.fullmatch(r"a_b~h[0-9a-f]{8}", safe_segment("a/b"))


def test_no_segment_ends_in_a_dot() -> None:
    """Azure refuses a segment ending in `.`: the key builder escapes it (tagged), also the template's own."""
    assert re.fullmatch(r"rec__~h[0-9a-f]{8}", safe_segment("rec.."))
    key = object_key("{call_id}./{filename}", file("default:abc", "x."))
    assert not any(part.endswith(".") for part in key.split("/"))


SAMPLES = Path(__file__).parents[2] / "samples"


def sample_files() -> list[StreamFile]:
    files = []
    for path in sorted(SAMPLES.glob("call.*_ready*.json")):
        found = ready_file(json.loads(path.read_text()))
        assert found is not None
        files.append(found)
    return files


def fake_stream_names() -> list[tuple[str, str]]:
    start = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
    cids = ["default:weekly-sync-42", "audio_room:1_dtxQ4PTcFRTweqGBx5TpN", "livestream:launch-day"]
    names = [(cid, default_filename(kind, cid, start, recording_type=rtype, audio_only=audio))
             for cid in cids for kind, rtype, audio in [("recording", "composite", False),
                                                        ("recording", "composite", True),
                                                        ("recording", "individual", False),
                                                        ("recording", "raw", False),
                                                        ("transcription", None, False)]]
    return names


def test_stream_names_keep_exactly_todays_key() -> None:
    """Ordinary names (the samples' and the fake Stream's `rec_<type>_<id>_<ts>.mp4`) are not tagged:
    their key is the values joined, as before keys were made injective."""
    for sample in sample_files():
        assert object_key(DEFAULT, sample) == f"{sample.call_type}/{sample.call_id}/{sample.filename}"
        assert object_key("{call_cid}/{session_id}/{recording_type}/{filename}", sample) == (
            f"{sample.call_cid}/{sample.session_id or 'no-session'}/{sample.recording_type or sample.kind}/"
            f"{sample.filename}")
    for cid, name in fake_stream_names():
        call_type, call_id = cid.split(":")
        assert object_key(DEFAULT, file(cid, name)) == f"{call_type}/{call_id}/{name}"
