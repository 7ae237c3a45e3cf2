"""Create-only writes: the archiver never writes an object over other bytes.

A writer opened without ``overwrite=True`` refuses a key that already holds an object: it raises
`worker.errors.KeyTaken` (permanent, reason ``key_taken``) and leaves nothing behind. How, by the
storage's ``create_only`` setting (`config.StorageConfig.create_only`):

- ``condition`` (the default): the request that makes the object visible carries the store's own
  create-only condition, and the store refuses it atomically when the key is taken: S3
  ``If-None-Match: *`` on PutObject and CompleteMultipartUpload (412 PreconditionFailed), GCS
  ``ifGenerationMatch=0`` on the upload (412 conditionNotMet), Azure ``If-None-Match: *`` on Put Blob
  and Put Block List (409 BlobAlreadyExists), local disk a hard link of the temporary file to the
  final name (EEXIST) instead of a rename over it.
- ``head``: for a store that ignores the condition (it would overwrite anyway) or rejects it (every
  write would fail): a HEAD (`Storage.stat`) right before that request, which then goes without the
  condition. Weaker: an object another writer puts there between the HEAD and the write is
  overwritten. `archiver storage check` finds out which a store needs (`worker.storage.probe`).

In both modes a writer that is about to send parts (an S3 multipart upload, Azure blocks, a GCS
resumable session) checks the key with a HEAD first, so that no part goes up for a taken key and
nothing is left to clean up: Azure cannot delete the uncommitted blocks of a name that a committed
blob holds (they stay until Azure drops them, seven days on), and only that race leaves them.

``overwrite=True`` sends no condition and checks nothing: the archiver's own manifests (rewritten
as a session fills), and a transfer replacing its own object after a verification found it missing
or damaged (`worker.ledger.store.Ledger.requeue_archived`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from config import CreateOnly
from worker.errors import KeyTaken

if TYPE_CHECKING:
    from worker.storage.base import Storage

__all__ = ["CreateOnly", "Guard", "guard"]


@dataclass(frozen=True)
class Guard:
    """How one writer keeps off a taken key (see the module docstring)."""

    mode: CreateOnly | None  # None: the writer may replace an object
    exists: Callable[[], bool]  # a HEAD of the key
    where: str  # the storage and the key, for the message

    @property
    def condition(self) -> bool:
        """Whether the request that makes the object visible carries the store's create-only condition."""
        return self.mode == "condition"

    def check(self) -> None:
        """A HEAD of the key: raises KeyTaken when it holds an object (never when overwriting), and the
        storage's errors (StorageUnavailable, StorageRefused) when the HEAD fails."""
        if self.mode is not None and self.exists():
            raise KeyTaken(f"{self.where}: an object is already there (a create-only write refuses it)")

    def head_first(self) -> None:
        """In mode ``head``, the HEAD right before the request that makes the object visible."""
        if self.mode == "head":
            self.check()


def guard(storage: Storage, key: str, *, overwrite: bool) -> Guard:
    """The guard of a writer of `key` into `storage` (`overwrite`: it may replace an object)."""

    def exists() -> bool:
        try:
            storage.stat(key)
        except FileNotFoundError:
            return False
        return True

    mode = None if overwrite else storage.create_only
    return Guard(mode, exists, f"{storage.storage_type} storage {storage.name!r}: {storage.describe()}{key}")
