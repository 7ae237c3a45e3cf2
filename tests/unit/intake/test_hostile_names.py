"""Hostile call ids, session ids and file names (worker/intake/object_keys.py into local disk): whatever a
webhook says, the key is deterministic, passes check_key and lands under the storage's root and prefix."""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from worker.files import StreamFile
from worker.intake.object_keys import MAX_PATH_SEGMENT_BYTES, MAX_SEGMENT_BYTES, object_key, safe_segment
from worker.storage.keys import check_key
from worker.storage.local.storage import LocalStorage

T = datetime(2026, 11, 1, tzinfo=UTC)
TEMPLATES = [
    "{call_type}/{call_id}/{filename}",
    "{call_cid}/{session_id}/{recording_type}/{filename}",
    "{year}/{month}/{day}/{call_type}-{call_id}-{session_id}-{filename}",
    "{call_type}{call_id}{filename}",  # values side by side in one segment
    "archive/./../{kind}/{filename}",  # an operator's own dots are dropped too
]
FRAGMENTS = [
    "..", ".", "../", "/", "\\", "..\\", "/etc/passwd", "\0", "\n", "\r", "\x7f", "\u202e", "\u200b", "\ufeff",
    "\uff0f", "\uff3c", "\ufe68", "\uff0e", "\u2024", "\u2025", ".\u0307", "e\u0301", "\u00e9", "%2e", "%2E%2e",
    "%2f", "%5C", "%252e", "%00", "%", "~", " ", "\u3000", "\ud800", "\udfff", "\U0001f600", "C:", "con", "a",
    "rec.mp4", ":",
]
hostile = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12),
              st.tuples(st.sampled_from(FRAGMENTS + ["x", "\u00e9"]), st.integers(1, 4000)).map(lambda t: t[0] * t[1])),
    max_size=6,
).map("".join)


def stream_file(call_type: str, call_id: str, filename: str, session_id: str | None) -> StreamFile:
    return StreamFile(call_cid=f"{call_type}:{call_id}", kind="recording", filename=filename, url="https://x/y",
                      start_time=T, end_time=T, session_id=session_id, recording_type="composite")


def assert_safe(key: str) -> None:
    assert check_key(key) == key
    for segment in key.split("/"):
        assert 0 < len(segment.encode("utf-8")) <= MAX_PATH_SEGMENT_BYTES
        assert not any(c in segment for c in "\0\\\n\r\u202e")
        decoded = segment
        for _ in range(4):  # no %-decoding or NFKC layer can make path syntax of it
            decoded = unicodedata.normalize("NFKC", unquote(decoded))
            assert "/" not in decoded and "\\" not in decoded and decoded.strip() not in ("", ".", "..")


def assert_lands_inside(storage: LocalStorage, key: str, outside: Path) -> None:
    path = storage.path(key)
    assert os.path.commonpath([os.path.realpath(path), os.path.realpath(storage.base)]) == os.path.realpath(
        storage.base)
    with storage.open_writer(key, content_type="video/mp4", metadata={}) as writer:
        writer.write(b"x")
        writer.commit()
    assert path.read_bytes() == b"x" and b"".join(storage.read(key)) == b"x"
    assert list(outside.iterdir()) == []


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(template=st.sampled_from(TEMPLATES), call_type=hostile, call_id=hostile, filename=hostile,
       session_id=st.none() | hostile)
@example(template=TEMPLATES[0], call_type="..", call_id="../../etc", filename="/etc/passwd", session_id=None)
@example(template=TEMPLATES[3], call_type="%2", call_id="f..%2", filename="f", session_id=None)
def test_object_keys_of_hostile_names_are_safe_and_deterministic(
    template: str, call_type: str, call_id: str, filename: str, session_id: str | None
) -> None:
    """Property: any values give one key, the same every time, that check_key accepts segment by segment."""
    file = stream_file(call_type, call_id, filename, session_id)
    key = object_key(template, file)
    assert object_key(template, file) == key
    assert_safe(key)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(template=st.sampled_from(TEMPLATES), call_type=hostile, call_id=hostile, filename=hostile,
       prefix=st.sampled_from(["", "pre/fix/", "archive"]))
def test_hostile_keys_write_under_the_local_root_and_prefix(
    template: str, call_type: str, call_id: str, filename: str, prefix: str
) -> None:
    """Property: LocalStorage writes the key of any values inside root/prefix, and nothing beside it."""
    with tempfile.TemporaryDirectory() as scratch:
        root, outside = Path(scratch, "root"), Path(scratch, "outside")
        outside.mkdir()
        storage = LocalStorage("disk", root, prefix)
        assert_lands_inside(storage, object_key(template, stream_file(call_type, call_id, filename, None)), outside)


@pytest.mark.parametrize(
    ("call_cid", "filename"),
    [("default:../../etc", "passwd"), ("..:..", ".."), ("a:/abs", "/etc/passwd"), ("a:b", "C:\\win\\x.mp4"),
     ("a:b", "nul\0byte.mp4"), ("a:b", "x" * 10_000), ("a:" + "é" * 5_000, "y" * 10_000 + ".mp4"),
     ("a:b", "rec\u202e4pm.exe"), ("a:b", "..\uff0f..\uff0fetc"), ("a:b", ".\u0307.\u0307"), ("a:b", "%2e%2e"),
     ("a:b", "%2e%2e%2f%2e%2e%2fetc"), ("a:b", "\uff0e\uff0e"), ("a:b", "\u2025"), ("a:b", "\ud800.mp4")],
)
def test_known_tricks_stay_under_the_root(tmp_path: Path, call_cid: str, filename: str) -> None:
    """The classic tricks, one by one: three segments, each safe, written inside the root."""
    call_type, _, call_id = call_cid.partition(":")
    key = object_key("{call_type}/{call_id}/{filename}", stream_file(call_type, call_id, filename, None))
    assert len(key.split("/")) == 3
    assert_safe(key)
    (tmp_path / "outside").mkdir()
    assert_lands_inside(LocalStorage("disk", tmp_path / "root", "p/"), key, tmp_path / "outside")


def test_nfc_and_nfd_twins_give_two_keys() -> None:
    """The same name composed or decomposed is two files at Stream: two keys, both NFC (macOS merges
    NFC/NFD twins, so the decomposed one is tagged rather than kept as it is)."""
    composed, decomposed = "caf\u00e9.mp4", "cafe\u0301.mp4"
    one = object_key("{filename}", stream_file("a", "b", composed, None))
    other = object_key("{filename}", stream_file("a", "b", decomposed, None))
    assert one == composed and other != one
    assert unicodedata.is_normalized("NFC", other) and other.startswith("caf\u00e9~h") and other.endswith(".mp4")


def test_encoded_dots_stay_literal_and_never_become_a_dot_segment() -> None:
    """`%2e%2e` and fullwidth dots are not `..`; they are kept readable (tagged) but cannot decode into one."""
    assert re.fullmatch(r"__2e_2e~h[0-9a-f]{8}", safe_segment("%2e%2e"))
    assert re.fullmatch(r"_\uff0e\uff0e~h[0-9a-f]{8}", safe_segment("\uff0e\uff0e"))
    assert safe_segment("rec 100% done.mp4") == "rec 100% done.mp4"  # a harmless % is kept
    assert safe_segment("a%41b.mp4") == "a%41b.mp4"


def test_long_names_are_cut_with_a_hash_and_stay_distinct() -> None:
    """10 kB names are cut to MAX_SEGMENT_BYTES; names differing only past the cut stay distinct."""
    a, b = "é" * 5_000 + "a", "é" * 5_000 + "b"
    assert len(safe_segment(a).encode()) <= MAX_SEGMENT_BYTES and safe_segment(a) != safe_segment(b)
    side_by_side = object_key("{call_type}{call_id}{filename}", stream_file("x" * 300, "y" * 300, "z" * 300, None))
    assert len(side_by_side.encode()) <= MAX_PATH_SEGMENT_BYTES


def test_a_symlink_planted_in_the_root_is_not_followed(tmp_path: Path) -> None:
    """A key through a link that leads outside the root is refused, never written through."""
    from worker.errors import StorageRefused

    storage = LocalStorage("disk", tmp_path / "root")
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", tmp_path / "root" / "default")
    key = object_key("{call_type}/{call_id}/{filename}", stream_file("default", "c", "rec.mp4", None))
    with pytest.raises(StorageRefused):
        storage.open_writer(key, content_type="video/mp4", metadata={})
    assert list((tmp_path / "outside").iterdir()) == []
