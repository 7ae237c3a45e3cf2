"""A transfer whose key is taken: the same bytes count as archived, other bytes fail it for good.

Writes are create-only (`worker.storage.create_only`): a write refused with KeyTaken (at its
commit, or before its first part went up) means an object is at the transfer's key already. The
copy still fetches and hashes every byte of the file (writing none), and then the object there is
compared with them (`resolve_taken`):

- the same size and SHA-256 (`Storage.verify`: the SHA-256 the store keeps with the object where
  every write replaces it, else the object read back and hashed): the file is archived as it is.
  Most often an earlier attempt of this transfer committed it and could not record it (a worker
  killed between the two, a lost lease, an error reading it back): the retry is idempotent;
- the size and SHA-256 an earlier attempt noted just before its commit (`Heartbeat.note_commit`):
  archived too, as what that attempt wrote; this covers a file that differs between two fetches
  (a stats report's ``duration``);
- anything else: KeyTaken, a permanent ``failed`` with reason ``key_taken`` in the ledger. Nothing was
  written and the object is left as it is; an operator moves it away or changes ``key_template``,
  then retries the transfer.

The intake's key owners (`worker.ledger.keys`: one key, one file) keep two files of one ledger off
one key, so other bytes there come from outside this archiver (another tool, another ledger, an
object placed by hand).
"""

from __future__ import annotations

import structlog

from worker.errors import KeyTaken, StorageUnavailable
from worker.storage import Storage, StoredObject
from worker.storage.checksums import Digests

log = structlog.get_logger(__name__)


def resolve_taken(storage: Storage, key: str, fetched: Digests, noted: tuple[int, str] | None,
                  taken: KeyTaken) -> Digests:
    """What is archived at `key`, whose write was refused with `taken`: `fetched` (the bytes this
    attempt fetched) or `noted` (size and SHA-256 an earlier attempt was about to commit) when the
    object there is those bytes. Raises KeyTaken (permanent) when it is other bytes;
    StorageUnavailable when it vanished meanwhile (the next attempt writes it); the storage's errors."""
    try:
        stored = storage.stat(key)
    except FileNotFoundError:
        raise StorageUnavailable(f"{taken}; that object is gone now, so the next attempt writes it") from None
    candidates = [fetched]
    if noted is not None and noted != (fetched.size, fetched.sha256):
        candidates.append(Digests(size=noted[0], sha256=noted[1]))
    for candidate in candidates:
        if _same(storage, key, stored, candidate):
            log.info("object_already_archived", key=key, bytes=candidate.size, sha256=candidate.sha256,
                     noted=candidate is not fetched)
            return candidate
    if stored.size != fetched.size:
        problem = f"{stored.size} bytes there, {fetched.size} in the file"
    else:
        problem = f"the same size, but not the file's sha256 {fetched.sha256}"
    log.error("object_key_taken", key=key, problem=problem)
    raise KeyTaken(
        f"{storage.describe()}{key} already holds other bytes than this file's ({problem}); nothing was written. "
        "Move that object away or change key_template, then retry the transfer (archiver transfers retry)"
    ) from taken


def _same(storage: Storage, key: str, stored: StoredObject, candidate: Digests) -> bool:
    """Whether the object at `key` (`stored`, as stat saw it) is the bytes `candidate` describes: its
    size and every checksum the store reports, then its SHA-256 (`Storage.verify`)."""
    if stored.mismatch(candidate) is not None:
        return False
    return storage.verify(key, candidate.size, candidate.sha256) is None
