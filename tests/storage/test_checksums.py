"""The digests computed on the way: the background hasher gives exactly what hashing in line gives."""

from __future__ import annotations

import base64
import hashlib
import os

import google_crc32c
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.storage.checksums import BackgroundHasher, Hasher, crc32c_b64, crc32c_of_parts


@settings(max_examples=50, deadline=None)
@given(chunks=st.lists(st.binary(max_size=5000), max_size=20), depth=st.integers(1, 4))
def test_the_background_hasher_matches_hashing_in_line(chunks: list[bytes], depth: int) -> None:
    inline = Hasher(("crc32c", "md5"))
    with BackgroundHasher(("crc32c", "md5"), depth=depth) as background:
        for chunk in chunks:
            inline.update(chunk)
            background.update(chunk)
            assert background.size == inline.size, "the size counts at once (a resume starts from it)"
        digests = background.digests()
    data = b"".join(chunks)
    assert digests == inline.digests()
    assert digests.sha256 == hashlib.sha256(data).hexdigest()
    assert digests.md5 == base64.b64encode(hashlib.md5(data).digest()).decode()
    assert digests.crc32c == base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode()


def test_the_background_hasher_stops_its_thread() -> None:
    with BackgroundHasher() as hasher:
        hasher.update(b"x" * 100)
    assert hasher._pool._shutdown  # noqa: SLF001 - the one way to see the thread was let go


@settings(max_examples=100, deadline=None)
@given(parts=st.lists(st.binary(max_size=3000), min_size=1, max_size=8))
def test_the_crc32c_of_parts_is_the_crc32c_of_the_whole(parts: list[bytes]) -> None:
    wire = [(crc32c_b64(part), len(part)) for part in parts]
    assert crc32c_of_parts(wire) == crc32c_b64(b"".join(parts))


def test_crc32c_combines_over_multi_mebibyte_parts() -> None:
    parts = [os.urandom(5 << 20), os.urandom(5 << 20), os.urandom(123)]
    assert crc32c_of_parts([(crc32c_b64(p), len(p)) for p in parts]) == crc32c_b64(b"".join(parts))
