"""A manifest per session: a JSON list of the session's archived files, beside them in every storage.

Written at `manifest_template` (default ``{call_type}/{call_id}/manifest_{session_id}.json``) into each
storage holding an archived file of the session, and rewritten after each of its transfers is
archived, so it always lists what is archived so far. A manifest is the archiver's own object: it
replaces the one before (written with ``overwrite=True``, the one exception to create-only writes
besides a transfer replacing its own damaged object; the data files are never replaced: intake's
key-owner guard keeps them apart). Its key is claimed in the storage's ``keyowner`` hash under
``manifest:<cid>:<sid>``, so a data file whose key would be the manifest's gets another key at
intake, and a manifest whose key a data file holds is not written (``manifest_key_taken``). Files
without a session_id (older payloads) have no manifest. Its ``complete`` is true once the session is
complete (`worker.sessions.complete`, which writes the final manifest through `Manifests.rewrite`
like a worker does).

The ledger keeps what was written last (``manifest:<cid>:<sid>``, `worker.ledger.keys`): its key,
SHA-256, size and storages. Two workers archiving files of one session at once: each bumps the
session's ``generation``; one holds the lock and writes until the manifest it wrote saw the latest
generation (the release and that check are one script), so the last file is never left out.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, cast

import structlog

from worker.clock import from_ms, rfc3339
from worker.files import content_type_for
from worker.ledger.models import Transfer
from worker.runtime import Runtime
from worker.storage import unprotected
from worker.storage.checksums import Digests, Hasher

log = structlog.get_logger(__name__)
MANIFEST_VERSION = 1
CONTENT_TYPE = "application/json"
LOCK_MS = 120_000  # a writer that died frees the session after this

# KEYS: manifest hash, lock ; ARGV: token, generation written  ->  1 if released (nothing newer arrived)
RELEASE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 1 end
if (redis.call('HGET', KEYS[1], 'generation') or '0') ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[2])
return 1
"""


def archiver_version() -> str:
    try:
        return version("stream-archiver")
    except PackageNotFoundError:
        return "dev"


@dataclass(frozen=True)
class Session:
    """One session of one call."""

    call_cid: str
    session_id: str

    @property
    def name(self) -> str:
        return f"{self.call_cid}:{self.session_id}"

    def key(self, template: str) -> str:
        call_type, _, call_id = self.call_cid.partition(":")
        return template.format(call_type=call_type, call_id=call_id, call_cid=self.call_cid,
                               session_id=self.session_id)


@dataclass(frozen=True)
class Written:
    """A manifest as written: its key, bytes' SHA-256 and size, and the storages holding it."""

    key: str
    sha256: str
    bytes: int
    storages: tuple[str, ...]


def entry(transfer: Transfer, file: dict[str, str]) -> dict[str, Any]:
    """One archived file at one storage, as the manifest lists it."""
    return {
        "kind": transfer.kind, "filename": transfer.filename, "key": transfer.key, "bytes": transfer.bytes,
        "sha256": transfer.sha256, "content_type": content_type_for(transfer.filename),
        "start_time": rfc3339(from_ms(file.get("start_time"))), "end_time": rfc3339(from_ms(file.get("end_time"))),
        "recording_type": file.get("recording_type") or None, "storage": transfer.storage,
        "archived_at": rfc3339(transfer.updated_at),
    }


def archived_files(runtime: Runtime, session: Session) -> list[dict[str, Any]]:
    """Every archived transfer of the session's files, by kind, filename and storage."""
    ledger = runtime.ledger
    entries = []
    for file_id in cast(set[str], ledger.redis.smembers(ledger.keys.session_files(session.name))):
        file = ledger.file(file_id)
        for tid in ledger.transfers_of(file_id) if file else ():
            transfer = ledger.get(tid)
            if transfer is not None and transfer.state == "archived":
                entries.append(entry(transfer, file))
    return sorted(entries, key=lambda e: (e["kind"], e["filename"], e["storage"]))


def document(runtime: Runtime, session: Session, files: list[dict[str, Any]], *, complete: bool = False,
             ) -> dict[str, Any]:
    """The manifest: the call (with its custom data when the call cache has it), the session, its files;
    `complete` once the session is (`worker.sessions.complete`)."""
    call = runtime.ledger.cached_call(session.call_cid)
    custom = call.get("custom") if isinstance(call, dict) else None
    call_type, _, call_id = session.call_cid.partition(":")
    return {
        "manifest_version": MANIFEST_VERSION, "archiver_version": archiver_version(),
        "call": {"call_cid": session.call_cid, "call_type": call_type, "call_id": call_id,
                 "custom": custom if isinstance(custom, dict) else None},
        "session": {"session_id": session.session_id}, "complete": complete, "files": files,
    }


def _digests(body: bytes, native: str | None = None) -> Digests:
    hasher = Hasher((native,) if native else ())
    hasher.update(body)
    return hasher.digests()


class Manifests:
    """Writes sessions' manifests; what was written is in the ledger."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.ledger = runtime.ledger
        self._release = self.ledger.redis.register_script(RELEASE)

    def written(self, session: Session) -> dict[str, str]:
        """The ledger's record of the session's manifest ({} when none was written)."""
        return cast(dict[str, str], self.ledger.redis.hgetall(self.ledger.keys.manifest(session.name)))

    def file_archived(self, transfer: Transfer) -> Written | None:
        """After `transfer` was archived: its session's manifest rewritten (None: it has no session, or
        another process is writing that manifest and will include it). Raises what the storages and
        Redis raise; the next archived file of the session writes it again."""
        if not transfer.session_id:
            return None
        session = Session(transfer.call_cid, transfer.session_id)
        keys, redis = self.ledger.keys, self.ledger.redis
        redis.sadd(keys.session_files(session.name), transfer.file_id)  # a file recorded before the indexes
        redis.sadd(keys.call_sessions(session.call_cid), session.session_id)
        redis.hincrby(keys.manifest(session.name), "generation", 1)
        return self.rewrite(session)

    def rewrite(self, session: Session, *, final: bool = False) -> Written | None:
        """Write the session's manifest under its lock, again while files of it arrived meanwhile (their
        writers left them to the holder); None when another process holds the lock. `final`: see `write`."""
        keys, redis = self.ledger.keys, self.ledger.redis
        token = secrets.token_hex(16)
        if not redis.set(keys.manifest_lock(session.name), token, nx=True, px=LOCK_MS):
            return None
        try:
            while True:
                generation = cast(str, redis.hget(keys.manifest(session.name), "generation") or "0")
                written = self.write(session, generation, final=final)
                if self._release(keys=[keys.manifest(session.name), keys.manifest_lock(session.name)],
                                 args=[token, generation]):
                    return written
        finally:  # after an error: free the session (the next archived file of it writes it again)
            if redis.get(keys.manifest_lock(session.name)) == token:
                redis.delete(keys.manifest_lock(session.name))

    def write(self, session: Session, generation: str | None = None, *, final: bool = False) -> Written:
        """Write the session's manifest, as the ledger has it now, into every storage holding its files
        (`final`: the session is complete, and the manifest says so)."""
        mkey = self.ledger.keys.manifest(session.name)
        if generation is None:
            generation = cast(str, self.ledger.redis.hget(mkey, "generation") or "0")
        complete = final or bool(self.ledger.redis.hexists(mkey, "completed_at"))
        files = archived_files(self.runtime, session)
        body = json.dumps(document(self.runtime, session, files, complete=complete), indent=2,
                          sort_keys=True).encode() + b"\n"
        key = session.key(self.runtime.archive.manifest_template)
        storages = tuple(sorted({f["storage"] for f in files if self._claim_key(f["storage"], key, session)}))
        digests = _digests(body)
        for name in storages:
            storage = self.runtime.storage(name)
            native = storage.native_checksum_for(len(body))
            # no retention: the manifest is rewritten as the session fills (GCS would refuse a retained one)
            with storage.open_writer(key, content_type=CONTENT_TYPE, size_hint=len(body), overwrite=True,
                                     metadata={"call_cid": session.call_cid, "session_id": session.session_id},
                                     **unprotected(storage)) as w:
                w.write(body)
                w.commit(_digests(body, native))
        self.ledger.redis.hset(mkey, mapping={
            "key": key, "sha256": digests.sha256, "bytes": digests.size, "storages": ",".join(storages),
            "written_at": self.ledger.now_ms(), "written_generation": generation})
        log.info("manifest_written", call_cid=session.call_cid, session_id=session.session_id, key=key,
                 files=len(files), storages=list(storages), sha256=digests.sha256)
        return Written(key, digests.sha256, digests.size, storages)

    def _claim_key(self, storage: str, key: str, session: Session) -> bool:
        """Claim `key` in the storage's key owners for the manifest; False when a data file holds it."""
        owners, me = self.ledger.keys.key_owner(storage), f"manifest:{session.name}"
        self.ledger.redis.hsetnx(owners, key, me)
        owner = cast(str | None, self.ledger.redis.hget(owners, key))
        if owner != me:
            log.error("manifest_key_taken", call_cid=session.call_cid, session_id=session.session_id, key=key,
                      storage=storage, owner=owner)
            return False
        return True
