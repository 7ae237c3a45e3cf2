"""The storage interface every backend implements, and the contract its methods keep.

Keys given to a storage are *relative*: the storage puts its configured ``path`` prefix in front.
Keys are produced by `worker.keys.object_key` (safe path segments joined by ``/``), but a backend
must still never write outside its bucket/prefix (local: outside its root) whatever the key says.

Errors: a backend maps its SDK's errors at its edge to `worker.errors`:
``StorageUnavailable`` (transient: 5xx, throttling, timeouts, resets), ``StorageRefused``
(permanent: credentials, missing bucket, permission), and ``FileNotFoundError`` for a missing key.

Writing is streaming: ``open_writer`` → ``write(chunk)``… → ``commit()``; or ``abort()``. The
object becomes visible only at ``commit`` (never half-written), and an aborted writer leaves
nothing behind (no temporary file, no pending multipart upload). Memory stays bounded by the
backend's part size × parts in flight, whatever the object's size.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import ClassVar, Self


@dataclass(frozen=True)
class StoredObject:
    """What a storage holds under a key."""

    key: str
    size: int
    metadata: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None
    etag: str | None = None


@dataclass(frozen=True)
class Capabilities:
    """Optional abilities, declared up front rather than discovered by exceptions."""

    multipart: bool = False
    server_side_copy: bool = False
    native_checksum: str | None = None  # "crc32c" | "md5" | None


class ObjectWriter(ABC):
    """One object being written. Use as a context manager: leaving it uncommitted aborts it."""

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Append bytes. Raises StorageUnavailable / StorageRefused."""

    @abstractmethod
    def commit(self) -> StoredObject:
        """Make the object visible under its key, atomically. Raises StorageUnavailable /
        StorageRefused; after an error the writer is aborted."""

    @abstractmethod
    def abort(self) -> None:
        """Discard everything written. Idempotent; never raises for "already gone"."""

    @property
    @abstractmethod
    def committed(self) -> bool:
        """True once `commit` has succeeded."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.committed:
            self.abort()


class Storage(ABC):
    """A destination for archived files: a bucket (or directory) and a prefix inside it."""

    storage_type: ClassVar[str]
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def open_writer(
        self,
        key: str,
        *,
        content_type: str,
        metadata: Mapping[str, str],
        size_hint: int | None = None,
    ) -> ObjectWriter:
        """Start writing `key` (replacing any object there once committed)."""

    @abstractmethod
    def stat(self, key: str) -> StoredObject:
        """Describe the object at `key`. Raises FileNotFoundError when there is none."""

    @abstractmethod
    def read(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Stream the object's bytes back. Raises FileNotFoundError when there is none."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; a missing one is not an error."""

    @abstractmethod
    def describe(self) -> str:
        """Where this storage writes, for logs and the CLI (never a credential), e.g.
        ``s3://bucket/prefix/`` or ``/srv/archive/prefix/``."""

    def close(self) -> None:  # noqa: B027 - optional hook: most backends have nothing to release
        """Release connections and threads. Idempotent."""
