"""The storage interface every backend implements, and the contract its methods keep.

Keys given to a storage are *relative*: the storage puts its configured ``path`` prefix in front.
Keys are produced by `worker.intake.object_keys.object_key` (safe path segments joined by ``/``), but a backend
must still never write outside its bucket/prefix (local: outside its root) whatever the key says.

Errors: a backend maps its SDK's errors at its edge to `worker.errors`:
``StorageUnavailable`` (transient: 5xx, throttling, timeouts, resets), ``StorageRefused``
(permanent: credentials, missing bucket, permission), and ``FileNotFoundError`` for a missing key.

Writing is streaming: ``open_writer`` → ``write(chunk)``… → ``commit(digests)``; or ``abort()``.
The object becomes visible only at ``commit`` (never half-written), and an aborted writer leaves
nothing behind (no temporary file, no pending multipart upload). Memory stays bounded by the
backend's part size × parts in flight, whatever the object's size.

Create-only: a writer never replaces an object unless opened with ``overwrite=True``. A key that
already holds one raises KeyTaken (a StorageRefused, reason ``key_taken``) at ``commit``, or at a
``write`` that would send the first part, and nothing is written; how each store refuses, and the
storage's ``create_only`` mode (``"condition"``: the store's own create-only condition, atomic;
``"head"``: a HEAD first, weaker), are in `worker.storage.create_only`.

Checksums: the caller computes SHA-256 and the backend's ``capabilities.native_checksum`` while
streaming and hands them to ``commit``. A backend puts ``sha256`` into the object's metadata where
it can set metadata after the bytes (one-request uploads, local files), and gives the store its
native full-object checksum so the store itself checks the bytes (CRC32C on S3 and GCS, MD5 on
Azure). ``stat`` reports, in ``StoredObject.checksums``, every checksum the store keeps for the
object (``sha256`` from metadata, ``crc32c``, ``md5``), in `worker.storage.checksums` wire form.

Write-once (`Retention`, `Protection`): a storage whose settings ask for a retention period or holds
(S3 Object Lock, GCS object retention and holds, an Azure immutability policy and legal hold) says so
in ``retention``, and every writer it opens sets them on the upload itself, so that no moment passes
with the object unprotected. ``open_writer(..., protect=False)`` writes without them: only for the
archiver's own probes (start-up, the periodic health probe, and the objects of `archiver storage check`
other than its retention probe), which must never leave an object the store will not let anyone
delete, and for the session manifests, which are rewritten as a session fills. A caller passes
``protect`` only to a storage whose ``retention`` is set (a plug-in's ``open_writer`` need not take
it). ``protection(key)`` reads back what protects an object (None: this storage keeps no such
state); ``write_once_problem()`` says why the bucket cannot keep what ``retention`` asks (no Object
Lock, no versioning, no object retention, no version-level immutability), before anything is written;
``delete_version`` and ``release_holds`` act on one version of an object, as the store names it
(``StoredObject.version``, ``Protection.version``). A store refusing a delete or an overwrite for a
retention period or a hold raises ObjectLocked.

Holds and erasure. ``versions(key)`` lists every version the store keeps of the object at ``key`` (every
S3 version and delete marker, every GCS generation, every Azure version and snapshot; on local disk the
one file), each with what the store says protects it: a legal hold, an unexpired retention period. It
deletes nothing, so `archiver erase` can check every object before it deletes any. ``erase(key)``
deletes every one of them, by its version id (a delete marker is not an erasure: the versions behind
it are deleted too, and the marker), and returns what it deleted; a store refusing because of a
retention period or a hold raises ErasureRefused (reason ``retention`` / ``legal_hold``) naming the
version: before deleting any version it checks what `versions` read back (`refuse_if_protected`), and
a store refusing anyway midway leaves deleted what was deleted before. Optional, ``capabilities.legal_hold``:
``set_legal_hold(key, on)`` sets or clears the store's own legal hold on every version of the object
(S3 ObjectLockLegalHold, in a bucket with Object Lock; GCS temporary hold; Azure legal hold, with
version-level immutability), and reads it back: a store that answers yes but keeps no hold is refused.
Local disk has no store hold: the ledger's hold (`worker.compliance.holds`) is all there is.

Links (optional, ``capabilities.links``): ``link(key, ttl)`` gives a URL that GETs the object, with
``Range``, for ``ttl`` and no longer, to whoever holds it: no other credential is asked for, so a link is
a bearer credential until it expires. The store checks the signature and the expiry, not the archiver
(S3 presigned GET, GCS V4 signed URL, Azure SAS). A backend that cannot sign with the credentials it
was given declares ``links = False`` for that instance and its ``link`` raises LinkUnavailable saying
what it would need. Local disk has no store to sign for it: `archiver web` serves its files
(`worker.links`).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, ClassVar, Self

from config import CreateOnly, StorageConfig
from worker.errors import ErasureReason, ErasureRefused, LinkUnavailable
from worker.storage.checksums import Digests, Hasher

# The longest a store's signature may last: SigV4 (S3) and V4 (GCS) signed URLs at most 7 days, and
# an Azure user delegation key as long. `max_link_ttl` (config/archive.py) says the same.
MAX_SIGNED_TTL = timedelta(days=7)


@dataclass(frozen=True)
class StoredObject:
    """What a storage holds under a key."""

    key: str
    size: int
    metadata: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None
    etag: str | None = None
    checksums: Mapping[str, str] = field(default_factory=dict)  # "sha256" (hex), "crc32c", "md5" (base64)
    version: str | None = None  # the store's id of this version: S3 VersionId, GCS generation, Azure version id

    def mismatch(self, digests: Digests) -> str | None:
        """Why this object is not the bytes `digests` describe (its size, or any checksum the store
        reports that differs), or None when it matches."""
        if self.size != digests.size:
            return f"{self.key} holds {self.size} bytes, {digests.size} were written"
        for algorithm, value in self.checksums.items():
            ours = digests.get(algorithm)
            if ours is not None and value != ours:
                return f"{self.key} has {algorithm} {value}, {ours} was written"
        return None


# The holds a write can set, by the names `Retention` and `Protection` use: "legal" (S3, Azure),
# "temporary" and "event_based" (GCS).
HOLD_NAMES = {"legal": "legal hold", "temporary": "temporary hold", "event_based": "event-based hold"}


def _holds_text(holds: tuple[str, ...]) -> str:
    return ", ".join(HOLD_NAMES.get(hold, hold) for hold in holds)


@dataclass(frozen=True)
class Retention:
    """What a storage's settings ask every object to carry from its upload on: a retention period of
    `days` in `mode` (S3 GOVERNANCE | COMPLIANCE; GCS and Azure Unlocked | Locked), and `holds`."""

    days: int | None = None
    mode: str | None = None
    holds: tuple[str, ...] = ()

    @classmethod
    def of(cls, config: StorageConfig) -> Retention | None:
        """What `config` asks for (S3, GCS or Azure keys), or None when it asks for nothing."""
        if config.aws_s3 is not None:
            s3 = config.aws_s3
            found = cls(s3.s3_object_lock_days, s3.s3_object_lock_mode, ("legal",) if s3.s3_legal_hold else ())
        elif config.azure_blob is not None:
            az = config.azure_blob
            found = cls(az.abs_immutability_days, az.abs_immutability_mode, ("legal",) if az.abs_legal_hold else ())
        else:
            holds = tuple(name for name, on in (("temporary", config.gcs_temporary_hold),
                                                ("event_based", config.gcs_event_based_hold)) if on)
            found = cls(config.gcs_retention_days, config.gcs_retention_mode, holds)
        return found if found.days or found.holds else None

    def until(self, now: datetime | None = None) -> datetime | None:
        """When an object written `now` (default: now) may be deleted, whole seconds; None without a period."""
        if not self.days:
            return None
        start = (now or datetime.now(UTC)).replace(microsecond=0)
        return start + timedelta(days=self.days)

    def __str__(self) -> str:
        period = [f"{self.mode} for {self.days} day{'s' if self.days != 1 else ''}"] if self.days else []
        return ", ".join(period + ([_holds_text(self.holds)] if self.holds else []))


@dataclass(frozen=True)
class Protection:
    """What keeps one version of an object from being deleted or replaced, as its store reports it: a
    retention period (until `retain_until`, in `mode`), `holds` (names as in `Retention`), and
    `version`, the store's id of that version (S3 VersionId, GCS generation, Azure version id)."""

    retain_until: datetime | None = None
    mode: str | None = None
    holds: tuple[str, ...] = ()
    version: str | None = None

    @property
    def legal_hold(self) -> bool:
        """Whether any hold protects it (S3 or Azure legal hold, GCS temporary or event-based hold)."""
        return bool(self.holds)

    def locked(self, now: datetime | None = None) -> bool:
        """Whether the store refuses to delete it `now` (default: now)."""
        return bool(self.holds) or (self.retain_until is not None and self.retain_until > (now or datetime.now(UTC)))

    def __str__(self) -> str:
        until = self.retain_until.astimezone(UTC).isoformat().replace("+00:00", "Z") if self.retain_until else None
        period = [f"{self.mode or 'retained'} until {until}"] if until else []
        return ", ".join(period + ([_holds_text(self.holds)] if self.holds else [])) or "no retention, no hold"


def unprotected(storage: Storage) -> dict[str, bool]:
    """The `open_writer` keywords of a write without retention or holds: ``protect=False`` for a
    storage whose writes carry them, nothing for the others (a plug-in's `open_writer` need not take it)."""
    return {"protect": False} if storage.retention is not None else {}


@dataclass(frozen=True)
class ObjectVersion:
    """One version the store keeps of an object (`Storage.versions`), and what protects it."""

    key: str
    version: str | None = None  # the store's id: S3 VersionId, GCS generation, Azure version id; None: the object
    kind: str = "object"  # "object" | "version" | "delete_marker" | "snapshot"
    legal_hold: bool = False  # S3 / Azure legal hold, GCS temporary or event-based hold
    retain_until: datetime | None = None  # an unexpired retention period, as far as the store reports it

    def blocker(self, now: datetime | None = None) -> tuple[ErasureReason, str] | None:
        """Why the store would refuse to delete this version (reason, text), or None."""
        if self.legal_hold:
            return "legal_hold", f"{self} is under a legal hold"
        if self.retain_until is not None and self.retain_until > (now or datetime.now(UTC)):
            return "retention", f"{self} is retained until {self.retain_until.astimezone(UTC).isoformat()}"
        return None

    def __str__(self) -> str:
        what = self.kind.replace("_", " ")
        return f"{self.key} ({what} {self.version})" if self.version else self.key


def refuse_if_protected(where: str, found: list[ObjectVersion]) -> None:
    """Raise ErasureRefused for the first of `found` the store says it would refuse to delete (its
    hold or retention read back by `versions`), so that an erase refused by a store deletes nothing."""
    for version in found:
        blocker = version.blocker()
        if blocker is not None:
            raise ErasureRefused(f"{where}: {blocker[1]}", reason=blocker[0])


@dataclass(frozen=True)
class Capabilities:
    """Optional abilities, declared up front rather than discovered by exceptions."""

    multipart: bool = False
    server_side_copy: bool = False
    native_checksum: str | None = None  # "crc32c" | "md5" | None: what `commit` wants in its digests
    # Checksums `stat` reports that every rewrite of the object replaces (the store computes them
    # over the bytes, or every write sets them anew, as S3, GCS and Azure do with metadata): what
    # `verify` may trust. Local disk has none: its xattr survives a rewrite of the file's bytes.
    content_checksums: frozenset[str] = frozenset()
    # `link` signs a short-lived GET URL with the credentials this instance holds (see the module docstring).
    links: bool = False
    # `set_legal_hold` sets the store's own legal hold (see "Holds and erasure" above).
    legal_hold: bool = False


@dataclass(frozen=True)
class Piece:
    """One durable piece of an unfinished upload: its size and the CRC32C (base64, as
    worker.storage.checksums.crc32c_b64 gives it) of its bytes as they were sent."""
    size: int
    crc32c: str


@dataclass(frozen=True)
class UploadState:
    """What the store durably holds of an unfinished upload, from the object's first byte: enough for a
    later attempt, in any process, to go on from `offset` (`Storage.resume_writer`). JSON-able via
    `to_json()` / `UploadState.from_json(text)` (handle is the backend's own plain-JSON dict:
    S3 {"upload_id": ..., "etags": [...]}, GCS {"session": <resumable session URL>}, Azure {"nonce": ..., "blocks": [...]},
    local {"temp": <temporary file name>}). The handle may be a capability (GCS session URL): never log it."""  # noqa: E501 - the spec's text
    offset: int                    # == sum(p.size for p in pieces)
    pieces: tuple[Piece, ...]
    handle: Mapping[str, Any]

    def to_json(self) -> str:
        return json.dumps({"offset": self.offset, "pieces": [[p.size, p.crc32c] for p in self.pieces],
                           "handle": dict(self.handle)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> UploadState:
        """Raises ValueError for text that is not an UploadState (or whose offset is not its pieces' sum)."""
        try:
            data = json.loads(text)
            pieces = tuple(Piece(int(size), str(crc)) for size, crc in data["pieces"])
            state = cls(int(data["offset"]), pieces, dict(data["handle"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not an upload state: {exc}") from None
        if state.offset != sum(p.size for p in pieces):
            raise ValueError(f"upload state of {state.offset} bytes in pieces of {sum(p.size for p in pieces)}")
        return state


class ObjectWriter(ABC):
    """One object being written. Use as a context manager: leaving it uncommitted aborts it."""

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Append bytes. Raises StorageUnavailable / StorageRefused; KeyTaken when the writer, about
        to send its first part, finds the key taken (the writer is then aborted)."""

    @abstractmethod
    def commit(self, digests: Digests | None = None) -> StoredObject:
        """Make the object visible under its key, atomically. `digests` describe every byte
        written (see the module docstring for what a backend does with them). Raises KeyTaken when
        the key holds an object (unless opened with ``overwrite=True``), StorageUnavailable /
        StorageRefused (reason "checksum_rejected" when the store finds a checksum wrong, or refuses
        the way it was sent); after an error the writer is aborted."""

    @abstractmethod
    def abort(self) -> None:
        """Discard everything written. Idempotent; never raises for "already gone"."""

    @property
    @abstractmethod
    def committed(self) -> bool:
        """True once `commit` has succeeded."""

    def durable(self) -> UploadState | None:
        """What the store holds durably of the bytes written so far (a prefix of them; the pieces whose
        upload the store acknowledged, contiguous from byte 0), for a later attempt to resume; None while
        nothing is (the object may still go in one request) or when the backend cannot resume. Cheap: called
        from the copying thread after writes; thread-safe against the writer's part threads."""
        return None

    def detach(self) -> None:
        """Close the writer WITHOUT discarding what the store holds durably (a later attempt resumes it
        from the ledger's UploadState): parts queued are cancelled, running ones waited for. Idempotent;
        never raises. After it, `committed` is False and abort() does nothing. Default: abort()."""
        self.abort()

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
    capabilities: Capabilities = Capabilities()  # a backend may set its own per instance
    create_only: CreateOnly = "condition"  # the storage's setting, set by `registry.build_storage`
    retention: Retention | None = None  # what every protected write carries (see "Write-once" above)

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
        overwrite: bool = False,
        protect: bool = True,
    ) -> ObjectWriter:
        """Start writing `key`: a new object, refused with KeyTaken when the key holds one, or with
        `overwrite`, one that replaces whatever is there once committed (ObjectLocked, at commit or at
        the first part, when a retention period or a hold protects it). With ``retention`` set the
        object carries it from its upload on, unless `protect` is False (see "Write-once" above)."""

    def resume_writer(self, key: str, state: UploadState, *, content_type: str, metadata: Mapping[str, str],
                      size_hint: int | None = None, overwrite: bool = False, protect: bool = True) -> ObjectWriter | None:  # noqa: E501 - the spec's line
        """A writer that goes on from `state`: its next `write` is byte `state.offset` of the object, and
        its `commit(digests)` takes digests of the WHOLE object (as a fresh writer's). Checks first that the
        store still holds every piece of `state` (S3: ListParts sizes/ETags; GCS: the session's persisted
        size >= offset; Azure: the uncommitted block list; local: the temporary file, its prefix re-read and
        checked against the pieces' CRC32C, then cut to `offset`). Returns None when it does not (upload
        aborted or expired, file gone, a piece differs): the caller then opens a fresh writer. Raises
        StorageUnavailable when the store cannot be asked. The same create-only condition (`overwrite`),
        retention/legal hold (`protect`) and KMS settings apply at commit as for a fresh writer. Default: None."""
        return None

    @abstractmethod
    def stat(self, key: str) -> StoredObject:
        """Describe the object at `key`. Raises FileNotFoundError when there is none."""

    @abstractmethod
    def read(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Stream the object's bytes back. Raises FileNotFoundError when there is none."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; a missing one is not an error."""

    def protection(self, key: str) -> Protection | None:
        """What protects the current version of the object at `key` (an empty `Protection` when nothing
        does), or None when this storage keeps no retention or holds at all. Raises FileNotFoundError,
        StorageRefused / StorageUnavailable."""
        return None

    def write_once_problem(self) -> str | None:
        """Why the bucket cannot keep what ``retention`` asks (e.g. "bucket b has no Object Lock"), or None
        when it can, or nothing is asked. Sends a request or two. Raises StorageRefused /
        StorageUnavailable when the store will not tell."""
        return None

    def delete_version(self, key: str, version: str) -> None:
        """Delete exactly `version` of the object at `key` (the store's id: `StoredObject.version`); a
        missing one is not an error. Raises ObjectLocked when a retention period or a hold protects it,
        StorageRefused / StorageUnavailable. Only where the store names versions."""
        raise NotImplementedError(f"{type(self).__name__} names no versions")

    def release_holds(self, key: str, version: str | None = None) -> None:
        """Release every hold on `version` (default: the current one) of the object at `key`. Raises
        FileNotFoundError, StorageRefused / StorageUnavailable. Only where ``retention`` sets holds."""
        raise NotImplementedError(f"{type(self).__name__} sets no holds")

    def versions(self, key: str) -> list[ObjectVersion]:
        """Every version the store keeps of the object at `key`, with what protects each (see "Holds
        and erasure" above); [] when there is none. Deletes nothing. Raises ValueError,
        StorageRefused / StorageUnavailable. This default: the one object `stat` finds."""
        try:
            self.stat(key)
        except FileNotFoundError:
            return []
        return [ObjectVersion(key)]

    def erase(self, key: str) -> list[ObjectVersion]:
        """Delete every version of the object at `key`; what was deleted ([] when nothing was there).
        Raises ErasureRefused when the store refuses one for a retention period or a hold (naming it;
        what was deleted before stays deleted), ValueError, StorageRefused / StorageUnavailable.
        This default, for a store without versions: `delete`."""
        found = self.versions(key)
        if found:
            self.delete(key)
        return found

    def set_legal_hold(self, key: str, on: bool) -> list[ObjectVersion]:
        """Only where ``capabilities.legal_hold``: set (`on`) or clear the store's legal hold on every
        version of the object at `key`, read back; the versions it now holds (or released). Raises
        FileNotFoundError when there is no object, StorageRefused when the store refuses or does not
        keep the hold (a bucket without Object Lock, an emulator), StorageUnavailable."""
        raise NotImplementedError(f"{type(self).__name__} keeps no legal holds")

    def copy_from_url(
        self,
        key: str,
        url: str,
        *,
        size: int,
        content_type: str,
        metadata: Mapping[str, str],
        overwrite: bool = False,
    ) -> StoredObject:
        """Only where ``capabilities.server_side_copy``: the store itself fetches `url` (`size`
        bytes, a signed URL that must stay valid meanwhile) into `key`, so the bytes skip the
        worker; create-only unless `overwrite`, as `open_writer`. Raises CopyRefused when the store
        cannot or will not (nothing is left behind: the caller streams instead), KeyTaken,
        StorageRefused / StorageUnavailable otherwise."""
        raise NotImplementedError(f"{type(self).__name__} declares no server-side copy")

    def link(self, key: str, ttl: timedelta) -> str:
        """Only where ``capabilities.links``: a URL that GETs the object at `key` (``Range`` honoured)
        until `ttl` from now, then is refused by the store. Signing sends nothing to the store, or one
        request where the credential is a token (GCS signBlob, Azure's user delegation key). It does not
        check that the object exists. Raises LinkUnavailable where this storage cannot sign (the message
        says what it would need), KeyRefused, StorageRefused / StorageUnavailable when the store
        refuses or fails to help sign."""
        raise LinkUnavailable(f"{self.describe()}: this storage ({type(self).__name__}) gives no download links")

    def verify(self, key: str, size: int, sha256: str) -> str | None:
        """Why the object at `key` is no longer the `size` bytes with SHA-256 `sha256` that were
        archived there (missing, another size, another checksum), or None when it still is. Trusts
        a ``sha256`` from `stat` only when ``capabilities.content_checksums`` declares it; otherwise
        (local disk, or an object that carries none) reads the bytes back and hashes them. Raises
        StorageUnavailable / StorageRefused / KeyRefused."""
        try:
            stored = self.stat(key)
        except FileNotFoundError:
            return f"{self.describe()}{key} is missing"
        if stored.size != size:
            return f"{self.describe()}{key} holds {stored.size} bytes, {size} were archived"
        found = stored.checksums.get("sha256") if "sha256" in self.capabilities.content_checksums else None
        if found is None:
            hasher = Hasher(())
            for chunk in self.read(key):
                hasher.update(chunk)
            found = hasher.digests().sha256
        return None if found == sha256 else f"{self.describe()}{key} has sha256 {found}, {sha256} was archived"

    def native_checksum_for(self, size: int | None) -> str | None:
        """The native checksum `commit` wants for an object of `size` bytes (None: unknown size)."""
        return self.capabilities.native_checksum

    @abstractmethod
    def describe(self) -> str:
        """Where this storage writes, for logs and the CLI (never a credential), e.g.
        ``s3://bucket/prefix/`` or ``/srv/archive/prefix/``."""

    def close(self) -> None:  # noqa: B027 - optional hook: most backends have nothing to release
        """Release connections and threads. Idempotent."""
