"""LocalStorage: a directory tree on a local or mounted filesystem (``storage_type = "local"``).

An object ``key`` lives at ``<root>/<prefix><key>``; ``root`` is the configured ``bucket`` (relative
paths are resolved against the working directory when the storage is built, and created if missing).

Writing goes to a hidden ``.<name>.<hash of name>.<uuid>.partial`` file in the object's own
directory, which is fsynced and then put under the final name, and the directory is fsynced:
readers see no object, or the old one, or the new one, never half of one. Create-only (the default,
`worker.storage.create_only`): a hard link to the final name (`os.link`, atomic, EEXIST when the name
is taken: KeyTaken), then the temporary name is removed; a filesystem without hard links (some FUSE
and network mounts) refuses it, with a hint to set ``create_only = "head"``: then a stat of the name
comes first and the file is renamed. With ``overwrite=True`` it is renamed over the final name
(`os.replace`, atomic on POSIX).

Differences from S3, and why:

- content type and metadata are kept as JSON in one extended attribute, ``user.archiver``; on a
  filesystem without user xattrs (or when they exceed `MAX_XATTR_BYTES`, what one ext4 block holds) they
  are dropped with a ``storage_metadata_dropped`` warning rather than failing the archive (the
  bytes matter more than their labels);
- ``etag`` is always None (a filesystem has none to offer);
- a key cannot be both an object and a "directory" (``a`` and ``a/b``): writing the second raises
  StorageRefused, where S3 would keep both;
- a symbolic link inside the root that leads outside it is refused (StorageRefused), never followed.

An interrupted write can be resumed (`resume_writer`): its temporary file is fsynced every ``sync_every``
bytes (``resume_checkpoint``), and kept by `LocalWriter.detach` (see `worker.storage.local.writer`).

OS errors map to `worker.errors`: permission and shape errors (EACCES, EPERM, EROFS, ENOTDIR, ...)
are StorageRefused (reason ``permission`` for EACCES, EPERM, EROFS; else ``other``); everything else is
StorageUnavailable (reason ``disk_full`` for ENOSPC, EDQUOT, EFBIG; else ``other``), so a full disk is
retried until space is freed.
"""

from __future__ import annotations

import errno
import json
import os
import stat as stat_mode
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Self

import structlog

from config import StorageConfig, TransferTuning
from worker.errors import KeyRefused, StorageRefused
from worker.storage.base import Capabilities, ObjectWriter, Storage, StoredObject, UploadState
from worker.storage.checksums import b64, new_crc32c
from worker.storage.create_only import guard
from worker.storage.errors import ErrorTable, Failure, Rule, refused, unavailable
from worker.storage.keys import check_key, check_prefix
from worker.storage.local.writer import (
    PARTIAL_SUFFIX,
    SYNC_EVERY,
    LocalWriter,
    is_temp_of,
    remove_stale_partials,
)

__all__ = ["PARTIAL_SUFFIX", "XATTR", "LocalStorage", "storage_error"]

XATTR = "user.archiver"
NAME_MAX = 255  # bytes in one file name, on every common Linux filesystem
MAX_XATTR_BYTES = 4000  # one xattr must fit in one 4 KiB ext4 block, beside its header

TABLE = ErrorTable(  # by errno's name
    Rule(refused("permission"), codes={"EACCES", "EPERM", "EROFS"}),
    Rule(refused("other"), codes={"ENOTDIR", "EISDIR", "EEXIST", "ENOTEMPTY", "ENAMETOOLONG", "ELOOP", "E2BIG",
                                  "EINVAL"}),  # fmt: skip
    Rule(unavailable("disk_full"), codes={"ENOSPC", "EDQUOT", "EFBIG"}),
    default=unavailable("other"),
)
_NO_XATTR_ERRNOS = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP})
_XATTR_TOO_BIG_ERRNOS = frozenset({errno.E2BIG, errno.ERANGE})

log = structlog.get_logger(__name__)


def storage_error(exc: OSError, storage: str, action: str, where: str) -> Failure:
    """The `worker.errors` exception (StorageRefused / StorageUnavailable) for an OSError met while
    doing `action` on `where`."""
    code = errno.errorcode.get(exc.errno or 0, "no errno")
    message = f"local storage {storage!r}: cannot {action} {where}: {exc.strerror or exc} ({code})"
    return TABLE.outcome(code, 0).error(message)


class LocalStorage(Storage):
    """Objects as files under ``root/prefix``."""

    storage_type = "local"
    capabilities = Capabilities()  # no content_checksums: the xattr survives a rewrite; verify hashes

    def __init__(self, name: str, root: str | os.PathLike[str], prefix: str = "", sync_every: int = SYNC_EVERY) -> None:
        """Create ``root/prefix`` if missing. Raises ValueError for a bad prefix, StorageRefused /
        StorageUnavailable when the directory cannot be created. A writer fsyncs every `sync_every` bytes
        (what a later attempt may resume from)."""
        super().__init__(name)
        self.sync_every = sync_every
        self.root = Path(os.path.abspath(root))
        self.prefix = check_prefix(prefix)
        self.base = self.root / self.prefix
        try:
            os.makedirs(self.base, exist_ok=True)
        except OSError as exc:
            raise storage_error(exc, name, "create the directory", str(self.base)) from exc
        self._real_base = os.path.realpath(self.base)

    @classmethod
    def from_config(cls, config: StorageConfig, tuning: TransferTuning) -> Self:
        """``bucket`` is the root directory, ``path`` the prefix; a writer fsyncs every `resume_checkpoint` bytes."""
        return cls(config.name, config.bucket, config.path, int(tuning.resume_checkpoint))

    def error(self, exc: OSError, action: str, key: str) -> Failure:
        return storage_error(exc, self.name, action, f"{self.prefix}{key}")

    def path(self, key: str) -> Path:
        """The file for `key`. Raises KeyRefused (a ValueError) for an illegal key or a segment
        over NAME_MAX bytes, StorageRefused when a symbolic link would take it outside ``root/prefix``."""
        path = self.base / check_key(key)
        if any(len(segment.encode("utf-8", "surrogatepass")) > NAME_MAX for segment in key.split("/")):
            raise KeyRefused(f"local storage {self.name!r}: a file name is at most {NAME_MAX} bytes: {key!r}")
        self._check_inside(path, key)
        return path

    def _check_inside(self, path: Path, key: str) -> None:
        real = os.path.realpath(path)
        if os.path.commonpath([real, self._real_base]) != self._real_base:
            raise StorageRefused(
                f"local storage {self.name!r}: key {key!r} leads outside {self.base} through a symbolic link"
            )

    def open_writer(
        self, key: str, *, content_type: str, metadata: Mapping[str, str], size_hint: int | None = None,
        overwrite: bool = False, protect: bool = True,
    ) -> ObjectWriter:
        """Create the key's directories and its temporary file. Raises ValueError for an illegal
        key, StorageRefused / StorageUnavailable when the filesystem says no. Create-only unless
        `overwrite` (see the module docstring). A directory keeps no retention: `protect` changes nothing."""
        path = self._prepare(key)
        return LocalWriter(self, key, path, content_type, dict(metadata), guard(self, key, overwrite=overwrite))

    def _prepare(self, key: str, keep: str | None = None) -> Path:
        """The key's file, its directories made, the stale temporary files beside it removed (but `keep`)."""
        path = self.path(key)
        try:
            os.makedirs(path.parent, exist_ok=True)
        except OSError as exc:
            raise self.error(exc, "create the directory for", key) from exc
        self._check_inside(path.parent, key)  # again: a link may have been planted meanwhile
        try:
            remove_stale_partials(path, keep)
        except OSError as exc:
            raise self.error(exc, "clean the directory of", key) from exc
        return path

    def resume_writer(
        self, key: str, state: UploadState, *, content_type: str, metadata: Mapping[str, str],
        size_hint: int | None = None, overwrite: bool = False, protect: bool = True,
    ) -> ObjectWriter | None:
        """The temporary file `state` names, its pieces re-read and checked against their CRC32C, cut to
        `state.offset`; None when it is gone, shorter, or a piece differs. The other temporary files of the
        key are removed as for a fresh writer. Raises as `open_writer`."""
        temp = state.handle.get("temp")
        path = self.path(key)
        if not isinstance(temp, str) or not is_temp_of(path, temp):
            return None
        try:
            file = open(path.with_name(temp), "r+b")  # noqa: SIM115 - the writer closes it
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self.error(exc, "open the temporary file of", key) from exc
        try:
            same = self._holds(file, state)
            if same:
                file.truncate(state.offset)
                file.seek(state.offset)
        except OSError as exc:
            file.close()
            raise self.error(exc, "read the temporary file of", key) from exc
        if not same:
            file.close()
            return None
        self._prepare(key, keep=temp)
        return LocalWriter(self, key, path, content_type, dict(metadata), guard(self, key, overwrite=overwrite),
                           resumed=(file, state))

    @staticmethod
    def _holds(file: IO[bytes], state: UploadState, chunk: int = 1 << 20) -> bool:
        """Whether `file` begins with the pieces of `state` (sizes and CRC32C)."""
        if os.fstat(file.fileno()).st_size < state.offset:
            return False
        for piece in state.pieces:
            crc, left = new_crc32c(), piece.size
            while left:
                data = file.read(min(chunk, left))
                if not data:
                    return False
                crc.update(data)
                left -= len(data)
            if b64(crc.digest()) != piece.crc32c:
                return False
        return True

    def save_attributes(self, fd: int, key: str, content_type: str, metadata: Mapping[str, str]) -> None:
        """Store content type and metadata on the open file; drop them (warning) without xattrs."""
        value = json.dumps({"content_type": content_type, "metadata": dict(metadata)}, ensure_ascii=False).encode()
        if len(value) > MAX_XATTR_BYTES:  # ext4 answers ENOSPC, which would read as "disk full"
            log.warning("storage_metadata_dropped", storage=self.name, key=key, reason="larger than an xattr")
            return
        try:
            os.setxattr(fd, XATTR, value)
        except OSError as exc:
            if exc.errno not in _NO_XATTR_ERRNOS | _XATTR_TOO_BIG_ERRNOS:
                raise
            log.warning("storage_metadata_dropped", storage=self.name, key=key, reason=exc.strerror)

    def _load_attributes(self, path: Path) -> tuple[str | None, dict[str, str]]:
        try:
            data = json.loads(os.getxattr(path, XATTR))
        except OSError as exc:
            if exc.errno in _NO_XATTR_ERRNOS or exc.errno == errno.ENODATA:
                return None, {}
            raise
        except ValueError:  # not ours, or damaged: the bytes are still the object
            return None, {}
        return data.get("content_type"), dict(data.get("metadata", {}))

    def _stat_file(self, path: Path, key: str) -> os.stat_result:
        try:
            result = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise FileNotFoundError(f"local storage {self.name!r}: no object at {key!r}") from None
        except OSError as exc:
            raise self.error(exc, "stat", key) from exc
        if not stat_mode.S_ISREG(result.st_mode):
            raise FileNotFoundError(f"local storage {self.name!r}: no object at {key!r} (not a file)")
        return result

    def stat(self, key: str) -> StoredObject:
        """Size, content type and metadata of `key`. Raises FileNotFoundError, ValueError (illegal
        key), StorageRefused / StorageUnavailable."""
        path = self.path(key)
        result = self._stat_file(path, key)
        try:
            content_type, metadata = self._load_attributes(path)
        except OSError as exc:
            raise self.error(exc, "read the attributes of", key) from exc
        checksums = {"sha256": metadata["sha256"]} if "sha256" in metadata else {}
        return StoredObject(key=key, size=result.st_size, metadata=metadata, content_type=content_type,
                            checksums=checksums)

    def read(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Chunks of at most `chunk_size` bytes. Raises FileNotFoundError at once when there is no
        object; StorageRefused / StorageUnavailable (also while iterating)."""
        path = self.path(key)
        self._stat_file(path, key)
        return self._chunks(path, key, chunk_size)

    def _chunks(self, path: Path, key: str, chunk_size: int) -> Iterator[bytes]:
        try:
            with open(path, "rb") as file:
                while chunk := file.read(chunk_size):
                    yield chunk
        except FileNotFoundError:
            raise FileNotFoundError(f"local storage {self.name!r}: no object at {key!r}") from None
        except OSError as exc:
            raise self.error(exc, "read", key) from exc

    def delete(self, key: str) -> None:
        """Remove `key`; missing is fine. Raises ValueError, StorageRefused / StorageUnavailable."""
        path = self.path(key)
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        except OSError as exc:
            raise self.error(exc, "delete", key) from exc

    def describe(self) -> str:
        return f"{str(self.base).rstrip('/')}/"
