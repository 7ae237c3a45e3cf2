"""The local writer: a hidden temporary file beside the final one, fsynced and linked to the final name
at commit (create-only), or renamed over it.

See `worker.storage.local.storage` for the names of temporary files and what a reader sees.
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
from worker.storage.base import ObjectWriter, StoredObject
from worker.storage.checksums import Digests
from worker.storage.errors import CONDITION_HINT, TAKEN_HINT, Failure

if TYPE_CHECKING:
    from worker.storage.create_only import Guard
    from worker.storage.local.storage import LocalStorage

PARTIAL_SUFFIX = ".partial"
_NO_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV})  # link(2): not here

log = structlog.get_logger(__name__)


def _temp_prefix(name: str) -> str:
    """What every temporary file of the object `name` starts with, and no other object's: its first
    100 bytes (to stay under NAME_MAX) and a hash of the whole name (names may share those 100)."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return "." + name.encode()[:100].decode(errors="ignore") + "." + digest + "."


def temp_name(name: str) -> str:
    return f"{_temp_prefix(name)}{uuid.uuid4().hex}{PARTIAL_SUFFIX}"


def remove_stale_partials(path: Path) -> None:
    """Remove temporary files a killed writer left beside `path`: only this key's own, named
    exactly as `temp_name` names them.

    Safe: a key belongs to one transfer, and a transfer's lease (with its fencing token) lets only
    one writer run at a time, so any other temporary file of this name is a dead writer's.
    """
    prefix, size = _temp_prefix(path.name), len(temp_name(path.name))
    for sibling in path.parent.iterdir():
        name = sibling.name
        if name.startswith(prefix) and name.endswith(PARTIAL_SUFFIX) and len(name) == size:
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
                 guard: Guard):
        self._storage, self._key, self._path, self._guard = storage, key, path, guard
        self._content_type, self._metadata = content_type, metadata
        self._temp = path.with_name(temp_name(path.name))
        self._size = 0
        self._state = "open"
        try:
            self._file: IO[bytes] = open(self._temp, "xb")  # closed by commit() or abort()
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
