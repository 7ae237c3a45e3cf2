"""The local writer: a hidden temporary file beside the final one, fsynced and linked to the final name
at commit (create-only), or renamed over it.

See `worker.storage.local.storage` for the names of temporary files and what a reader sees.

Resuming (`ObjectWriter.durable`, `LocalStorage.resume_writer`): every `sync_every` bytes the writer fsyncs
the temporary file, and what was written until then is durable: one `Piece` (its size and the CRC32C of
its bytes, computed as they were written) per fsync, the temporary file's name as the handle. `detach`
closes the file and keeps it; a later writer re-opens it by that name, re-reads the pieces and checks each
CRC32C (a file cut short or changed is not resumed), and cuts it to the durable offset, so that bytes
written after the last fsync the ledger knows of (maybe torn by a crash) are written again.
"""

from __future__ import annotations

import errno
import hashlib
import os
import uuid
from contextlib import suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING

import structlog

from worker.errors import KeyTaken, StorageRefused
from worker.storage.base import ObjectWriter, Piece, StoredObject, UploadState
from worker.storage.checksums import Digests, b64, new_crc32c
from worker.storage.errors import CONDITION_HINT, TAKEN_HINT, Failure

if TYPE_CHECKING:
    from worker.storage.create_only import Guard
    from worker.storage.local.storage import LocalStorage

PARTIAL_SUFFIX = ".partial"
SYNC_EVERY = 64 * 1024 * 1024  # the default of `resume_checkpoint` (config/archive.py)
WRITE_BEHIND = 32 << 20  # bytes written between two hints to the kernel (`LocalWriter._write_behind`)
_NO_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV})  # link(2): not here

log = structlog.get_logger(__name__)


def _temp_prefix(name: str) -> str:
    """What every temporary file of the object `name` starts with, and no other object's: its first
    100 bytes (to stay under NAME_MAX) and a hash of the whole name (names may share those 100)."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return "." + name.encode()[:100].decode(errors="ignore") + "." + digest + "."


def temp_name(name: str) -> str:
    return f"{_temp_prefix(name)}{uuid.uuid4().hex}{PARTIAL_SUFFIX}"


def is_temp_of(path: Path, name: str) -> bool:
    """Whether `name` is one of the temporary files `temp_name` names for `path` (and nothing else: no
    other key's, no path)."""
    return (name.startswith(_temp_prefix(path.name)) and name.endswith(PARTIAL_SUFFIX)
            and len(name) == len(temp_name(path.name)) and "/" not in name)


def remove_stale_partials(path: Path, keep: str | None = None) -> None:
    """Remove temporary files a killed writer left beside `path`: only this key's own, named
    exactly as `temp_name` names them, but `keep` (the one a resumed writer goes on with).

    Safe: a key belongs to one transfer, and a transfer's lease (with its fencing token) lets only
    one writer run at a time, so any other temporary file of this name is a dead writer's.
    """
    for sibling in path.parent.iterdir():
        name = sibling.name
        if name != keep and is_temp_of(path, name):
            with suppress(FileNotFoundError):
                sibling.unlink()
                log.info("storage_stale_partial_removed", key=path.name)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalWriter(ObjectWriter):
    """A hidden temporary file beside the final one, linked to it (or renamed over it) at commit."""

    def __init__(self, storage: LocalStorage, key: str, path: Path, content_type: str, metadata: dict[str, str],
                 guard: Guard, resumed: tuple[IO[bytes], UploadState] | None = None):
        """A new temporary file; or, `resumed`, the open temporary file of `UploadState` (cut to its offset)."""
        self._storage, self._key, self._path, self._guard = storage, key, path, guard
        self._content_type, self._metadata = content_type, metadata
        self._state = "open"
        self._crc = new_crc32c()  # of the bytes written since the last fsync
        if resumed is not None:
            self._file, self._durable = resumed
            self._temp = path.with_name(str(self._durable.handle["temp"]))
            self._size = self._hinted = self._durable.offset
            return
        self._temp = path.with_name(temp_name(path.name))
        self._size = 0
        self._durable = UploadState(0, (), {"temp": self._temp.name})
        self._hinted = 0  # bytes written up to the last `_write_behind`
        try:
            self._file = open(self._temp, "xb")  # closed by commit(), abort() or detach()
        except OSError as exc:
            raise storage.error(exc, "create a temporary file for", key) from exc

    @property
    def committed(self) -> bool:
        return self._state == "committed"

    def _require_open(self) -> None:
        if self._state != "open":
            raise ValueError(f"writer for {self._key!r} is already {self._state}")

    def _fail(self, exc: OSError, action: str) -> Failure:
        self.abort()
        return self._storage.error(exc, action, self._key)

    def write(self, data: bytes) -> None:
        """Append `data`. Raises StorageRefused / StorageUnavailable (the writer is then aborted)."""
        self._require_open()
        try:
            self._file.write(data)
        except OSError as exc:
            raise self._fail(exc, "write") from exc
        self._size += len(data)
        self._crc.update(data)
        if self._size - self._hinted >= WRITE_BEHIND:
            self._write_behind()

    def _write_behind(self) -> None:
        """Start writing the last `WRITE_BEHIND` bytes to disk now, and drop the window before it from
        the page cache (written by now): commit's fsync then has little left to wait for, and a large
        file does not push other data out of memory. ``POSIX_FADV_DONTNEED`` starts writeback of dirty
        pages without waiting, and drops only clean ones. Advice only: an error changes nothing."""
        start, self._hinted = self._hinted, self._size
        with suppress(OSError, AttributeError):  # AttributeError: no posix_fadvise on this platform
            fd = self._file.fileno()  # (what the file object still buffers, at most a few KiB, waits)
            os.posix_fadvise(fd, start, self._size - start, os.POSIX_FADV_DONTNEED)
            os.posix_fadvise(fd, max(0, start - WRITE_BEHIND), WRITE_BEHIND, os.POSIX_FADV_DONTNEED)

    def durable(self) -> UploadState | None:
        """The bytes fsynced so far (one piece per fsync); fsyncs first when `sync_every` bytes or more were
        written since the last one. Raises StorageUnavailable / StorageRefused when the fsync fails (the
        writer is then aborted)."""
        if self._state == "open" and self._size - self._durable.offset >= self._storage.sync_every:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError as exc:
                raise self._fail(exc, "sync") from exc
            piece = Piece(self._size - self._durable.offset, b64(self._crc.digest()))
            self._durable = UploadState(self._size, (*self._durable.pieces, piece), self._durable.handle)
            self._crc = new_crc32c()
        return self._durable if self._durable.pieces else None

    def detach(self) -> None:
        """Close the temporary file and keep it, for a later writer to resume (`LocalStorage.resume_writer`)."""
        if self._state != "open":
            return
        self._state = "detached"
        with suppress(OSError):
            self._file.close()

    def commit(self, digests: Digests | None = None) -> StoredObject:
        """fsync, label (with the SHA-256 from `digests`), put under the final name (`_place`), fsync
        the directory. Raises KeyTaken when the name is taken (unless overwriting), StorageRefused /
        StorageUnavailable (the writer is then aborted); ValueError when already aborted."""
        self._require_open()
        if digests is not None:
            self._metadata = {**self._metadata, "sha256": digests.sha256}
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._storage.save_attributes(self._file.fileno(), self._key, self._content_type, self._metadata)
            self._file.close()
            self._place()
            fsync_dir(self._path.parent)
        except OSError as exc:
            raise self._fail(exc, "commit") from exc
        except BaseException:
            self.abort()
            raise
        self._state = "committed"
        checksums = {"sha256": digests.sha256} if digests is not None else {}
        return StoredObject(self._key, self._size, dict(self._metadata), self._content_type, checksums=checksums)

    def _place(self) -> None:
        """The temporary file under the final name: create-only, a hard link (EEXIST: KeyTaken) and the
        temporary name removed; else (overwriting, or after a stat in mode "head") renamed over it."""
        if not self._guard.condition:
            self._guard.head_first()
            os.replace(self._temp, self._path)
            return
        try:
            os.link(self._temp, self._path)
        except FileExistsError:
            if os.path.isdir(self._path):
                raise  # a "directory" holds the name: refused like any shape error
            raise KeyTaken(f"{self._guard.where}: cannot link the new file to its name ({TAKEN_HINT})") from None
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                raise
            raise StorageRefused(f"{self._guard.where}: this filesystem refuses hard links ({exc.strerror}): "
                                 f"{CONDITION_HINT}") from None
        with suppress(OSError):  # a name left behind is removed by the next writer of the key
            os.unlink(self._temp)

    def abort(self) -> None:
        """Close and unlink the temporary file. Never raises: a failure here is only logged, so that
        it cannot hide the error that led to the abort."""
        if self._state != "open":
            return
        self._state = "aborted"
        with suppress(OSError):
            self._file.close()
        try:
            os.unlink(self._temp)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("storage_abort_failed", storage=self._storage.name, key=self._key, reason=exc.strerror)
