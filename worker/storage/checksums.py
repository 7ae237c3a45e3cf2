"""Digests computed while the bytes stream past: SHA-256 always, and the store's native checksum.

Wire forms are the stores' own: CRC32C and MD5 as base64 of the big-endian bytes (S3's
``x-amz-checksum-crc32c``, GCS's ``crc32c``/``md5Hash``, Azure's ``Content-MD5``), SHA-256 as hex.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import google_crc32c

NATIVE = ("crc32c", "md5")
new_crc32c: Callable[[], Any] = google_crc32c.Checksum  # the library ships no types


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def crc32c_b64(data: bytes | tuple[bytes, ...]) -> str:
    """CRC32C of `data` (or of its chunks, one after the other) in its wire form."""
    if isinstance(data, tuple):
        checksum = new_crc32c()
        for chunk in data:
            checksum.update(chunk)
        return b64(checksum.digest())
    return b64(google_crc32c.value(data).to_bytes(4, "big"))


_CASTAGNOLI = 0x82F63B78  # CRC32C's polynomial, bit-reversed


def _gf2_times(matrix: tuple[int, ...], vector: int) -> int:
    total, row = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[row]
        vector >>= 1
        row += 1
    return total


@functools.lru_cache(maxsize=64)
def _zeros_operator(length: int) -> tuple[int, ...]:
    """The GF(2) matrix that advances a CRC32C register over `length` zero bytes (zlib's
    crc32_combine method: squaring from one zero bit). Parts share a length: computed once."""
    odd = (_CASTAGNOLI, *(1 << n for n in range(31)))  # one zero bit
    operator: tuple[int, ...] | None = None
    square = tuple(_gf2_times(odd, odd[n]) for n in range(32))  # two zero bits
    square = tuple(_gf2_times(square, square[n]) for n in range(32))  # four zero bits
    while length:
        square = tuple(_gf2_times(square, square[n]) for n in range(32))  # 8, 16, 32… zero bits
        if length & 1:
            operator = square if operator is None else tuple(_gf2_times(square, operator[n]) for n in range(32))
        length >>= 1
    return operator or tuple(1 << n for n in range(32))


def crc32c_combine(first: int, second: int, second_length: int) -> int:
    """CRC32C of A followed by B, from CRC32C(A), CRC32C(B) and len(B), without the bytes."""
    return _gf2_times(_zeros_operator(second_length), first) ^ second


def crc32c_of_parts(parts: list[tuple[str, int]]) -> str:
    """The whole object's CRC32C (wire form) from its parts' CRC32Cs (wire form) and sizes, in order."""
    total = 0
    for crc, size in parts:
        total = crc32c_combine(total, int.from_bytes(base64.b64decode(crc), "big"), size)
    return b64(total.to_bytes(4, "big"))


def md5_b64(data: bytes | tuple[bytes, ...]) -> str:
    """MD5 of `data` (or of its chunks, one after the other) in its wire form."""
    md5 = hashlib.md5(usedforsecurity=False)
    for chunk in data if isinstance(data, tuple) else (data,):
        md5.update(chunk)
    return b64(md5.digest())


@dataclass(frozen=True)
class Digests:
    """What was written: its size, SHA-256 (hex) and, when asked for, CRC32C and MD5 (base64)."""

    size: int
    sha256: str
    crc32c: str | None = None
    md5: str | None = None

    def get(self, algorithm: str) -> str | None:
        value: str | None = getattr(self, algorithm, None)
        return value


class Hasher:
    """Feeds every chunk to SHA-256 and to the native checksums in `extra` ("crc32c", "md5")."""

    def __init__(self, extra: tuple[str, ...] | frozenset[str] = ()) -> None:
        unknown = set(extra) - set(NATIVE)
        if unknown:
            raise ValueError(f"unknown checksum(s): {sorted(unknown)}")
        self._sha256 = hashlib.sha256()
        self._md5: Any = hashlib.md5(usedforsecurity=False) if "md5" in extra else None
        self._crc32c: Any = new_crc32c() if "crc32c" in extra else None
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._sha256.update(chunk)
        if self._md5 is not None:
            self._md5.update(chunk)
        if self._crc32c is not None:
            self._crc32c.update(chunk)

    def digests(self) -> Digests:
        return Digests(
            size=self.size,
            sha256=self._sha256.hexdigest(),
            crc32c=b64(self._crc32c.digest()) if self._crc32c is not None else None,
            md5=b64(self._md5.digest()) if self._md5 is not None else None,
        )


class BackgroundHasher:
    """A `Hasher` fed on a thread of its own (a context manager that stops it): SHA-256 and MD5
    release the GIL on large buffers, so hashing runs beside the download and the upload, on the
    other core. At most `depth` chunks wait (memory stays bounded); `size` counts what was handed
    in, at once."""

    def __init__(self, extra: tuple[str, ...] | frozenset[str] = (), depth: int = 4) -> None:
        self._hasher = Hasher(extra)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="hash")
        self._slots = threading.BoundedSemaphore(depth)
        self.size = 0

    def __enter__(self) -> BackgroundHasher:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def update(self, chunk: bytes) -> None:
        self._slots.acquire()  # blocks while `depth` chunks wait
        self.size += len(chunk)
        self._pool.submit(self._hash, chunk)

    def _hash(self, chunk: bytes) -> None:
        try:
            self._hasher.update(chunk)
        finally:
            self._slots.release()

    def digests(self) -> Digests:
        """The digests of everything handed in (waits for the chunks still queued)."""
        self._pool.submit(lambda: None).result()  # one thread, in order: all before it are done
        return self._hasher.digests()
