"""The storage contract, written once: a backend joins with ``class TestX(StorageConformance)`` and
four fixtures (its download links with ``class TestXLinks(LinkConformance)``, the same fixtures; its
write-once contract with ``class TestXProtection(ProtectionConformance)``, ``storage`` alone).

- ``storage``: the backend under test (tests/storage/conftest.py builds it for the module's ``BACKEND``),
  configured with the prefix `PREFIX`; parts of 5 MiB and a multipart threshold of 5 MiB where the
  backend has them;
- ``leftovers``: a callable listing what a writer may have left behind (temporary files, pending
  multipart uploads): it must stay empty after every commit and abort;
- ``raw_keys``: a callable listing every object's full key (prefix included) behind the storage's back;
- ``secrets`` (optional): credentials that must never show in ``describe()``;
- ``second_storage`` (tests/storage/conftest.py): another instance on the same bucket and prefix, as another
  worker process would build it, for the resume tests (`Storage.resume_writer`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import timedelta

import httpx
import pytest

from config import CreateOnly
from worker.audit.judge import read_back_verdict, stat_verdict
from worker.errors import KeyRefused, KeyTaken
from worker.storage.base import ObjectWriter, Piece, Storage, StoredObject, UploadState, unprotected
from worker.storage.checksums import Digests, Hasher
from worker.storage.write_once import remove_probe

MiB = 1024 * 1024
PREFIX = "archive/run/"
VIDEO = "video/mp4"
HOSTILE_KEYS = [
    "é/日本.mp4",
    "with space/file name.mp4",
    "what?/is=this&.mp4",
    "hash#tag.mp4",
    "%41percent%2F.mp4",
    "plus+sign.mp4",
    ".hidden.mp4",
    "long/" + "x" * 200,
]
ILLEGAL_KEYS = ["", "../x", "a/../../x", "..", "/abs", "a//b", "a/./b", "a/", "nul\x00.mp4", "back\\slash.mp4"]
# Keys some stores cannot hold: each backend's test class lists in `refused_keys` the ones it
# refuses (with KeyRefused, a permanent error); every other backend stores them as they are.
DOT_ENDED_KEYS = frozenset({"ends-in-dot./x.mp4", "x.mp4."})  # Azure drops a segment's trailing dot
CRLF_KEY = "cr\rlf\n.mp4"  # GCS: no CR or LF in an object name
LONG_NAME_KEY = "n" * 256 + ".mp4"  # local: one file name over NAME_MAX (255 bytes)
LONG_KEY = "/".join(["k" * 200] * 6)  # over S3's and GCS's 1024 bytes, Azure's 1024 characters
HARD_KEYS = sorted(DOT_ENDED_KEYS | {CRLF_KEY, LONG_NAME_KEY, LONG_KEY})


def uneven(data: bytes) -> Iterator[bytes]:
    """`data` in chunks of irregular sizes, none aligned with a part."""
    sizes, position, turn = (1, 65_537, MiB + 3, 3 * MiB - 1), 0, 0
    while position < len(data):
        yield data[position : position + sizes[turn % len(sizes)]]
        position += sizes[turn % len(sizes)]
        turn += 1


def write(
    storage: Storage, key: str, chunks: Iterable[bytes], content_type: str = VIDEO, *, overwrite: bool = False,
    **metadata: str,
) -> StoredObject:
    with storage.open_writer(key, content_type=content_type, metadata=metadata, overwrite=overwrite) as writer:
        for chunk in chunks:
            writer.write(chunk)
        return writer.commit()


def write_with_digests(storage: Storage, key: str, data: bytes, *, overwrite: bool = False
                       ) -> tuple[StoredObject, Digests]:
    """Write `data` in uneven chunks and commit it with SHA-256 and the backend's native checksum."""
    native = storage.capabilities.native_checksum
    hasher = Hasher((native,) if native else ())
    metadata = {"call_cid": "default:x"}
    with storage.open_writer(key, content_type=VIDEO, metadata=metadata, overwrite=overwrite) as writer:
        for chunk in uneven(data):
            hasher.update(chunk)
            writer.write(chunk)
        digests = hasher.digests()
        return writer.commit(digests), digests


def read(storage: Storage, key: str) -> bytes:
    return b"".join(storage.read(key))


def hasher_for(storage: Storage) -> Hasher:
    """SHA-256 and the backend's native checksum, as a transfer computes them."""
    native = storage.capabilities.native_checksum
    return Hasher((native,) if native else ())


def durable_after(writer: ObjectWriter, offset: int = 1, wait: float = 120) -> UploadState:
    """The writer's `durable` state once it covers at least `offset` bytes (its parts are acknowledged on
    their own threads: this waits for them, up to `wait` seconds, then fails)."""
    deadline = time.monotonic() + wait
    while True:
        state = writer.durable()
        if state is not None and state.offset >= offset:
            return state
        assert time.monotonic() < deadline, f"durable() still {state} after {wait} s"
        time.sleep(0.02)


def with_pieces(state: UploadState, pieces: Iterable[Piece]) -> UploadState:
    """`state` claiming other pieces (its offset their sum)."""
    kept = tuple(pieces)
    return dataclasses.replace(state, pieces=kept, offset=sum(piece.size for piece in kept))


def flipped(crc32c: str) -> str:
    """Another CRC32C in wire form."""
    return "AAAAAA==" if crc32c != "AAAAAA==" else "AAAAAQ=="


class StorageConformance:
    """What every backend promises (see `worker.storage.base`)."""

    refused_keys: frozenset[str] = frozenset()  # of HARD_KEYS: what this backend cannot store

    def another_writer(self, storage: Storage, key: str, data: bytes) -> None:
        """Someone else commits `data` at `key` while a writer of the storage is open: another writer
        of the same storage, unless the backend says otherwise."""
        write(storage, key, [data], overwrite=True)

    @pytest.fixture
    def prefix(self) -> str:
        return PREFIX

    @pytest.fixture
    def secrets(self) -> list[str]:
        return []

    def test_small_round_trip(self, storage: Storage) -> None:
        """A small object reads back byte for byte; commit and stat report its size."""
        data = os.urandom(10_000)
        assert write(storage, "calls/a.mp4", [data[:3], data[3:]]).size == len(data)
        assert read(storage, "calls/a.mp4") == data
        assert storage.stat("calls/a.mp4").size == len(data)

    def test_single_request_objects_carry_their_sha256(self, storage: Storage) -> None:
        """A small object committed with digests keeps its SHA-256 where stat can see it."""
        data = os.urandom(100_000)
        _, digests = write_with_digests(storage, "sum/small.mp4", data)
        stored = storage.stat("sum/small.mp4")
        assert stored.checksums.get("sha256") == digests.sha256
        native = storage.capabilities.native_checksum
        if native and native in stored.checksums:
            assert stored.checksums[native] == digests.get(native)

    def test_multipart_objects_carry_the_native_checksum(self, storage: Storage) -> None:
        """A multipart-sized object committed with digests has the store's native full-object
        checksum (when the backend declares one), equal to what was computed while streaming."""
        data = os.urandom(11 * MiB + 7)
        _, digests = write_with_digests(storage, "sum/big.mp4", data)
        stored = storage.stat("sum/big.mp4")
        assert stored.size == len(data)
        native = storage.capabilities.native_checksum
        if native:
            assert stored.checksums.get(native) == digests.get(native)
        assert read(storage, "sum/big.mp4") == data
        assert storage.verify("sum/big.mp4", len(data), digests.sha256) is None

    def test_verify_tells_an_object_still_archived_from_a_changed_or_missing_one(self, storage: Storage) -> None:
        """verify: None for the bytes archived; a reason when the object is missing, has another size,
        or was overwritten with other bytes of the same size (another file under its key)."""
        first, other = os.urandom(50_000), os.urandom(50_000)
        _, digests = write_with_digests(storage, "check/a.mp4", first)
        assert storage.verify("check/a.mp4", len(first), digests.sha256) is None
        assert "bytes" in (storage.verify("check/a.mp4", len(first) + 1, digests.sha256) or "")
        assert "sha256" in (storage.verify("check/a.mp4", len(first), "0" * 64) or "")
        write_with_digests(storage, "check/a.mp4", other, overwrite=True)
        assert "sha256" in (storage.verify("check/a.mp4", len(first), digests.sha256) or "")
        write(storage, "check/a.mp4", [other], overwrite=True)  # no digests: no sha256 kept with it
        assert "sha256" in (storage.verify("check/a.mp4", len(first), digests.sha256) or "")
        storage.delete("check/a.mp4")
        assert "missing" in (storage.verify("check/a.mp4", len(first), digests.sha256) or "")

    def test_the_audits_verdicts(self, storage: Storage) -> None:
        """`archiver audit` on this backend: ``ok`` by stat and read back; another file's bytes of the
        same size under the key are a ``mismatch`` read back (and by stat where the store keeps a
        SHA-256 each write replaces); a deleted object is missing (FileNotFoundError: ``missing``)."""
        first, other = os.urandom(40_000), os.urandom(40_000)
        _, digests = write_with_digests(storage, "audit/a.mp4", first)
        assert stat_verdict(storage, "audit/a.mp4", len(first), digests.sha256) == ("ok", "")
        assert read_back_verdict(storage, "audit/a.mp4", len(first), digests.sha256)[0] == "ok"
        write_with_digests(storage, "audit/a.mp4", other, overwrite=True)
        verdict, detail = read_back_verdict(storage, "audit/a.mp4", len(first), digests.sha256)
        assert verdict == "mismatch" and digests.sha256 in detail
        if "sha256" in storage.capabilities.content_checksums:
            assert stat_verdict(storage, "audit/a.mp4", len(first), digests.sha256)[0] == "mismatch"
        assert stat_verdict(storage, "audit/a.mp4", len(first) + 1, digests.sha256)[0] == "mismatch"
        storage.delete("audit/a.mp4")
        with pytest.raises(FileNotFoundError):
            stat_verdict(storage, "audit/a.mp4", len(first), digests.sha256)
        with pytest.raises(FileNotFoundError):
            read_back_verdict(storage, "audit/a.mp4", len(first), digests.sha256)

    def test_multipart_sized_round_trip(self, storage: Storage, leftovers: Callable[[], list[str]]) -> None:
        """A ~12 MiB object written in uneven chunks reads back exactly, and nothing is left pending."""
        data = os.urandom(12 * MiB + 12_345)
        assert write(storage, "big.mp4", uneven(data)).size == len(data)
        assert storage.stat("big.mp4").size == len(data)
        assert read(storage, "big.mp4") == data
        assert leftovers() == []

    def test_empty_object(self, storage: Storage) -> None:
        """An object of 0 bytes exists after commit and reads back empty."""
        assert write(storage, "empty.json", [], "application/json").size == 0
        assert storage.stat("empty.json").size == 0
        assert read(storage, "empty.json") == b""

    def test_read_respects_chunk_size(self, storage: Storage) -> None:
        """read() yields chunks no larger than asked, which join back into the object."""
        data = os.urandom(5000)
        write(storage, "chunked.bin", [data])
        chunks = list(storage.read("chunked.bin", chunk_size=1000))
        assert b"".join(chunks) == data and max(map(len, chunks)) <= 1000

    @pytest.mark.parametrize("size", [1000, 11 * MiB], ids=["small", "past-threshold"])
    def test_abort_leaves_nothing(self, storage: Storage, leftovers: Callable[[], list[str]], size: int) -> None:
        """Aborting, before or after the multipart threshold, leaves no object and no partial upload."""
        writer = storage.open_writer("aborted.mp4", content_type=VIDEO, metadata={})
        for chunk in uneven(os.urandom(size)):
            writer.write(chunk)
        writer.abort()
        writer.abort()  # idempotent
        assert not writer.committed
        with pytest.raises(FileNotFoundError):
            storage.stat("aborted.mp4")
        assert leftovers() == []

    def test_exception_inside_context_aborts(self, storage: Storage, leftovers: Callable[[], list[str]]) -> None:
        """Leaving the writer's `with` block by an exception aborts it: nothing becomes visible."""
        with pytest.raises(RuntimeError), storage.open_writer("crash.mp4", content_type=VIDEO, metadata={}) as w:
            w.write(os.urandom(6 * MiB))
            raise RuntimeError("download failed")
        with pytest.raises(FileNotFoundError):
            storage.stat("crash.mp4")
        assert leftovers() == []

    def test_missing_key(self, storage: Storage) -> None:
        """stat and read of a key never written raise FileNotFoundError (read at once)."""
        with pytest.raises(FileNotFoundError):
            storage.stat("nope/missing.mp4")
        with pytest.raises(FileNotFoundError):
            storage.read("nope/missing.mp4")

    def test_delete(self, storage: Storage) -> None:
        """Deleting a missing key is fine; deleting an object makes it missing."""
        storage.delete("never/written.mp4")
        write(storage, "doomed.mp4", [b"bye"])
        storage.delete("doomed.mp4")
        with pytest.raises(FileNotFoundError):
            storage.stat("doomed.mp4")

    def test_metadata_and_content_type_round_trip(self, storage: Storage) -> None:
        """Metadata (non-ASCII, %, spaces at the ends included) and content type come back as written."""
        metadata: Mapping[str, str] = {"call_cid": "default:abc-123", "title": " été 日本 %41 + ? # "}
        committed = write(storage, "meta.mp4", [b"x"], "video/webm", **metadata)
        stored = storage.stat("meta.mp4")
        assert dict(stored.metadata) == dict(committed.metadata) == metadata
        assert stored.content_type == committed.content_type == "video/webm"

    @pytest.mark.parametrize("size", [6, 11 * MiB], ids=["small", "past-threshold"])
    def test_overwrite_replaces(self, storage: Storage, leftovers: Callable[[], list[str]], size: int) -> None:
        """A writer opened with overwrite=True replaces an existing object, its size and its metadata."""
        second = os.urandom(size)
        write(storage, "same.mp4", [b"first version, longer"], version="1")
        write(storage, "same.mp4", uneven(second), overwrite=True, version="2")
        assert read(storage, "same.mp4") == second
        assert storage.stat("same.mp4").size == size
        assert storage.stat("same.mp4").metadata == {"version": "2"}
        assert leftovers() == []

    @pytest.mark.parametrize("mode", ["condition", "head"])
    @pytest.mark.parametrize("size", [1000, 11 * MiB], ids=["small", "past-threshold"])
    def test_a_second_write_to_a_taken_key_is_refused_and_leaves_the_first(
        self, storage: Storage, leftovers: Callable[[], list[str]], raw_keys: Callable[[], list[str]],
        mode: CreateOnly, size: int,
    ) -> None:
        """Create-only (the default), by the store's own condition or by a HEAD first: a second write
        to a key holding an object raises KeyTaken (permanent, reason key_taken), the first object's
        bytes and metadata are intact, and the refused writer left nothing behind (no pending upload,
        no staged blocks, no temporary file)."""
        storage.create_only = mode
        first, _ = write_with_digests(storage, "taken/a.mp4", b"the first object")
        with pytest.raises(KeyTaken) as refused:
            write_with_digests(storage, "taken/a.mp4", os.urandom(size))
        assert refused.value.reason == "key_taken"
        assert read(storage, "taken/a.mp4") == b"the first object"
        assert storage.stat("taken/a.mp4").metadata == first.metadata
        assert leftovers() == [] and raw_keys() == [PREFIX + "taken/a.mp4"]

    @pytest.mark.parametrize("mode", ["condition", "head"])
    def test_a_key_taken_while_writing_is_refused_at_commit(
        self, storage: Storage, leftovers: Callable[[], list[str]], mode: CreateOnly,
    ) -> None:
        """The race: another writer commits the key after this one sent its first parts; this one's
        commit is refused (the store's condition, or the HEAD right before it), the other's object
        stays, and the refused writer is aborted. Azure keeps the staged blocks of a name a committed
        blob holds, whatever the client asks (it drops them itself after seven days)."""
        storage.create_only = mode
        with storage.open_writer("race.mp4", content_type=VIDEO, metadata={}) as writer:
            for chunk in uneven(os.urandom(11 * MiB)):
                writer.write(chunk)
            self.another_writer(storage, "race.mp4", b"the other writer won")
            with pytest.raises(KeyTaken):
                writer.commit()
            assert not writer.committed
        assert read(storage, "race.mp4") == b"the other writer won"
        assert leftovers() == ([] if storage.storage_type != "abs" else [PREFIX + "race.mp4"])

    def test_a_deleted_key_can_be_written_again(self, storage: Storage) -> None:
        """Create-only refuses an object, not a name used once: after a delete the key takes a new one."""
        write(storage, "again.mp4", [b"one"])
        storage.delete("again.mp4")
        write(storage, "again.mp4", [b"two"])
        assert read(storage, "again.mp4") == b"two"

    def test_invisible_until_commit(self, storage: Storage) -> None:
        """Before commit the object does not exist, whatever has been written; commit flips `committed`."""
        with storage.open_writer("pending.mp4", content_type=VIDEO, metadata={}) as writer:
            writer.write(os.urandom(6 * MiB))
            with pytest.raises(FileNotFoundError):
                storage.stat("pending.mp4")
            assert not writer.committed
            writer.commit()
            assert writer.committed
            with pytest.raises(ValueError):
                writer.write(b"more")
        assert storage.stat("pending.mp4").size == 6 * MiB

    @pytest.mark.parametrize("key", HOSTILE_KEYS)
    def test_hostile_keys_round_trip(self, storage: Storage, raw_keys: Callable[[], list[str]], key: str) -> None:
        """Legal but awkward keys are stored under exactly that name and read back."""
        write(storage, key, [key.encode()])
        assert storage.stat(key).key == key
        assert read(storage, key) == key.encode()
        assert PREFIX + key in raw_keys()
        storage.delete(key)
        with pytest.raises(FileNotFoundError):
            storage.stat(key)

    @pytest.mark.parametrize("key", HARD_KEYS)
    def test_hard_keys_stored_or_refused_permanently(self, storage: Storage, leftovers: Callable[[], list[str]],
                                                     raw_keys: Callable[[], list[str]], key: str) -> None:
        """A key the store can hold round-trips under exactly that name; one it cannot (this backend's
        `refused_keys`) is refused with KeyRefused, a permanent error, before anything is written."""
        if key in self.refused_keys:
            with pytest.raises(KeyRefused):
                storage.open_writer(key, content_type=VIDEO, metadata={})
            with pytest.raises(KeyRefused):
                storage.stat(key)
            assert raw_keys() == [] and leftovers() == []
            return
        write(storage, key, [b"hard"])
        assert storage.stat(key).key == key and read(storage, key) == b"hard"
        assert PREFIX + key in raw_keys()

    @pytest.mark.parametrize("key", ILLEGAL_KEYS)
    def test_illegal_keys_refused(self, storage: Storage, key: str) -> None:
        """Empty, absolute, traversing and NUL/backslash keys raise KeyRefused (a ValueError, and a
        permanent error) on every method."""
        with pytest.raises(KeyRefused):
            storage.open_writer(key, content_type=VIDEO, metadata={})
        for method in (storage.stat, storage.read, storage.delete):
            with pytest.raises(KeyRefused):
                method(key)

    def test_prefix_respected(self, storage: Storage, raw_keys: Callable[[], list[str]]) -> None:
        """The object lands under the configured prefix, and nowhere else."""
        write(storage, "a/b.mp4", [b"data"])
        assert raw_keys() == [PREFIX + "a/b.mp4"]

    def test_describe_has_no_secret(self, storage: Storage, secrets: list[str]) -> None:
        """describe() names the place with its prefix and never a credential."""
        text = storage.describe()
        assert PREFIX in text
        assert not [secret for secret in secrets if secret in text]

    def test_erase_removes_every_version_and_nothing_else(self, storage: Storage) -> None:
        """erase deletes every version the store keeps of exactly that key (a rewrite made two in a versioned
        store), says what it deleted, leaves a neighbour whose name starts the same, and finds nothing after."""
        write(storage, "erase/a.mp4", [b"one"])
        write(storage, "erase/a.mp4", [b"two"], overwrite=True)
        write(storage, "erase/a.mp4x", [b"kept"])
        assert storage.versions("erase/a.mp4")
        assert storage.erase("erase/a.mp4")
        assert storage.versions("erase/a.mp4") == []
        assert storage.erase("erase/a.mp4") == []
        assert read(storage, "erase/a.mp4x") == b"kept"
        with pytest.raises(FileNotFoundError):
            storage.stat("erase/a.mp4")

    # Resume across attempts (`ObjectWriter.durable`, `detach`, `Storage.resume_writer`): an upload detached
    # by one attempt goes on in another storage instance, as in another process after a crash or a deploy.

    # Why the store behind this backend's tests cannot tell a state's piece CRC32C (`resume_blind_to_crc32c`),
    # or its pieces' sizes from others of the same total (`resume_blind_to_sizes`), from the true ones; "": it
    # can. (The transfer layer still checks every piece's CRC32C against the source before it resumes.)
    resume_blind_to_crc32c: str = ""
    resume_blind_to_sizes: str = ""

    @pytest.fixture
    def resumes(self, storage: Storage) -> None:
        if type(storage).resume_writer is Storage.resume_writer:
            pytest.skip(f"{type(storage).__name__} does not resume uploads (Storage.resume_writer's default)")

    def _detached(self, storage: Storage, key: str, data: bytes, *, written: int = 16 * MiB
                  ) -> tuple[UploadState, ObjectWriter]:
        """Write `data[:written]` to a fresh writer, taking its durable state once the first part is acknowledged
        (so that the store ends up holding more than the state says), then detach it."""
        writer = storage.open_writer(key, content_type=VIDEO, metadata={"call_cid": "default:x"})
        fed = 0
        for chunk in uneven(data[:written]):
            writer.write(chunk)
            fed += len(chunk)
            if fed >= 8 * MiB:
                break
        state = durable_after(writer)
        for chunk in uneven(data[fed:written]):
            writer.write(chunk)
        writer.detach()
        writer.detach()  # idempotent
        assert not writer.committed
        return state, writer

    def _resume(self, storage: Storage, key: str, state: UploadState) -> ObjectWriter | None:
        return storage.resume_writer(key, UploadState.from_json(state.to_json()), content_type=VIDEO,
                                     metadata={"call_cid": "default:x"})

    @pytest.mark.usefixtures("resumes")
    def test_a_detached_upload_resumes_in_another_instance(
        self, storage: Storage, second_storage: Storage, leftovers: Callable[[], list[str]],
    ) -> None:
        """Parts written, the durable state taken (JSON and back), the writer detached (its abort then does
        nothing, the store keeps the upload); another storage instance resumes it from the state's offset,
        the rest is written and committed with the whole object's digests: the object reads back byte for
        byte, stat reports its size and native checksum, and nothing is left pending."""
        data = os.urandom(21 * MiB + 4321)
        state, writer = self._detached(storage, "resumed/a.mp4", data)
        assert 0 < state.offset < 16 * MiB and state.offset == sum(piece.size for piece in state.pieces)
        writer.abort()  # after detach: nothing
        assert leftovers() != []  # the upload is kept for the next attempt
        with pytest.raises(FileNotFoundError):
            storage.stat("resumed/a.mp4")
        resumed = self._resume(second_storage, "resumed/a.mp4", state)
        assert resumed is not None
        hasher = hasher_for(second_storage)
        hasher.update(data)
        with resumed:
            for chunk in uneven(data[state.offset :]):
                resumed.write(chunk)
            progress = resumed.durable()
            assert progress is not None and progress.pieces[: len(state.pieces)] == state.pieces
            digests = hasher.digests()
            committed = resumed.commit(digests)
        assert committed.size == len(data)
        assert read(storage, "resumed/a.mp4") == data
        stored = storage.stat("resumed/a.mp4")
        assert stored.mismatch(digests) is None
        native = storage.capabilities.native_checksum
        if native == "crc32c":
            assert stored.checksums.get("crc32c") == digests.crc32c
        assert storage.verify("resumed/a.mp4", len(data), digests.sha256) is None
        assert leftovers() == []

    @pytest.mark.usefixtures("resumes")
    def test_durable_is_none_while_the_object_fits_one_request(
        self, storage: Storage, leftovers: Callable[[], list[str]],
    ) -> None:
        """Nothing is durable before a part is sent: a small object goes up in one request at commit."""
        with storage.open_writer("resumed/small.mp4", content_type=VIDEO, metadata={}) as writer:
            writer.write(os.urandom(1000))
            writer.write(os.urandom(4 * MiB))
            assert writer.durable() is None
            writer.commit()
            assert writer.committed
        writer.detach()  # committed: nothing to do
        assert storage.stat("resumed/small.mp4").size == 4 * MiB + 1000
        assert leftovers() == []

    @pytest.mark.usefixtures("resumes")
    def test_nothing_resumes_after_an_abort(
        self, storage: Storage, second_storage: Storage, leftovers: Callable[[], list[str]],
    ) -> None:
        """abort() (unlike detach) removes what was sent: resume_writer then answers None."""
        data = os.urandom(16 * MiB)
        writer = storage.open_writer("resumed/aborted.mp4", content_type=VIDEO, metadata={})
        for chunk in uneven(data[: 12 * MiB]):
            writer.write(chunk)
        state = durable_after(writer)
        writer.abort()
        writer.detach()  # after abort: nothing
        assert self._resume(second_storage, "resumed/aborted.mp4", state) is None
        assert leftovers() == []

    @pytest.mark.usefixtures("resumes")
    @pytest.mark.parametrize("mode", ["condition", "head"])
    def test_a_resumed_upload_is_still_create_only(
        self, storage: Storage, second_storage: Storage, mode: CreateOnly,
    ) -> None:
        """The key taken after the upload was resumed: its commit is refused with KeyTaken, as a fresh
        writer's, and the other object stays."""
        storage.create_only = second_storage.create_only = mode
        data = os.urandom(18 * MiB)
        state, _ = self._detached(storage, "resumed/taken.mp4", data)
        resumed = self._resume(second_storage, "resumed/taken.mp4", state)
        assert resumed is not None
        with resumed:
            for chunk in uneven(data[state.offset :]):
                resumed.write(chunk)
            self.another_writer(storage, "resumed/taken.mp4", b"the other writer won")
            hasher = hasher_for(second_storage)
            hasher.update(data)
            with pytest.raises(KeyTaken):
                resumed.commit(hasher.digests())
            assert not resumed.committed
        assert read(storage, "resumed/taken.mp4") == b"the other writer won"

    @pytest.mark.usefixtures("resumes")
    def test_a_state_the_store_does_not_hold_is_refused(self, storage: Storage, second_storage: Storage) -> None:
        """resume_writer answers None for a state claiming more than the store holds, and (where the store
        can tell: `resume_blind_to_pieces`) for a piece of another CRC32C or size; the true state still
        resumes afterwards."""
        data = os.urandom(16 * MiB)
        state, _ = self._detached(storage, "resumed/wrong.mp4", data)
        first = state.pieces[0]
        beyond = with_pieces(state, [*state.pieces, *state.pieces, *state.pieces, *state.pieces])
        assert self._resume(second_storage, "resumed/wrong.mp4", beyond) is None
        if not self.resume_blind_to_crc32c:
            other_crc = with_pieces(state, [Piece(first.size, flipped(first.crc32c)), *state.pieces[1:]])
            assert self._resume(second_storage, "resumed/wrong.mp4", other_crc) is None
        if not self.resume_blind_to_sizes:
            shorter = with_pieces(state, [Piece(first.size - 1, first.crc32c), *state.pieces[1:]])
            assert self._resume(second_storage, "resumed/wrong.mp4", shorter) is None
        resumed = self._resume(second_storage, "resumed/wrong.mp4", state)
        assert resumed is not None
        resumed.abort()

    def test_close_is_idempotent(self, storage: Storage) -> None:
        """close() may be called more than once."""
        storage.close()
        storage.close()


class ProtectionConformance:
    """Write-once, as every backend keeps its contract whatever its store keeps (the stores' own
    retention is tested per backend: tests/storage/test_*_write_once.py): a commit names the version
    `stat` names; a write without retention (``protect=False``, the probes) is an ordinary object that
    `remove_probe` removes entirely; `protection` of a plain object shows nothing locked, of a missing
    key FileNotFoundError (or None: a storage that keeps no such state). Only the ``storage`` fixture."""

    @pytest.fixture
    def prefix(self) -> str:
        return PREFIX

    def test_a_storage_without_retention_settings_asks_for_none(self, storage: Storage) -> None:
        assert storage.retention is None and storage.write_once_problem() is None and unprotected(storage) == {}

    def test_a_commit_and_stat_name_the_same_version(self, storage: Storage) -> None:
        stored = write(storage, "versioned.mp4", [b"one version"])
        assert storage.stat("versioned.mp4").version == stored.version

    def test_an_unprotected_probe_is_an_ordinary_object_removed_entirely(self, storage: Storage) -> None:
        with storage.open_writer("probe.txt", content_type="text/plain", metadata={}, protect=False) as writer:
            writer.write(b"probe")
            stored = writer.commit()
        assert b"".join(storage.read("probe.txt")) == b"probe"
        found = storage.protection("probe.txt")
        assert found is None or (not found.locked() and found.holds == ())
        remove_probe(storage, "probe.txt", stored.version)
        with pytest.raises(FileNotFoundError):
            storage.stat("probe.txt")
        remove_probe(storage, "probe.txt", stored.version)  # gone already: not an error

    def test_protection_of_a_missing_key(self, storage: Storage) -> None:
        try:
            found = storage.protection("absent.mp4")
        except FileNotFoundError:
            return
        assert found is None  # only a storage that keeps no retention at all answers without looking


Sign = Callable[[str, timedelta], str]  # (key, ttl) → a download URL


class LinkConformance:
    """Download links (`Storage.link`; local disk: `archiver web`'s ``/files/``): a link gives the exact
    bytes and honours ``Range`` before its TTL, and is refused after it. A backend joins with the same
    four fixtures as `StorageConformance`; ``sign`` (default: ``storage.link``, skipped when these
    credentials declare no links) may be overridden. Where the server behind the test serves a link
    whatever its expiry (moto, the GCS emulator), `expiry_param` names the query parameter in which
    the URL carries its TTL, and the test checks that instead of a refusal."""

    expiry_param: str = ""  # set only where the test server does not check expiry itself

    @pytest.fixture
    def prefix(self) -> str:
        return PREFIX

    @pytest.fixture
    def sign(self, storage: Storage) -> Sign:
        if not storage.capabilities.links:
            pytest.skip(f"{storage.describe()} declares no links with these credentials")
        return storage.link

    def test_a_link_gives_the_exact_bytes(self, storage: Storage, sign: Sign) -> None:
        """GET on the URL, with no other credential, returns the object byte for byte."""
        data = os.urandom(300_000)
        write(storage, "linked/a.mp4", [data])
        response = httpx.get(sign("linked/a.mp4", timedelta(minutes=5)), timeout=30)
        assert response.status_code == 200, response.text[:300]
        assert response.content == data

    def test_a_link_honours_range(self, storage: Storage, sign: Sign) -> None:
        """``Range: bytes=a-b`` gets 206 and exactly that slice, with its Content-Range."""
        data = os.urandom(100_000)
        write(storage, "linked/range.mp4", [data])
        url = sign("linked/range.mp4", timedelta(minutes=5))
        response = httpx.get(url, headers={"Range": "bytes=1000-1999"}, timeout=30)
        assert response.status_code == 206, response.text[:300]
        assert response.content == data[1000:2000]
        assert response.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
        tail = httpx.get(url, headers={"Range": "bytes=99990-"}, timeout=30)
        assert tail.status_code == 206 and tail.content == data[99990:]

    @pytest.mark.parametrize("key", [k for k in HOSTILE_KEYS if not k.startswith("long/")])
    def test_a_link_to_a_hostile_key(self, storage: Storage, sign: Sign, key: str) -> None:
        """Unicode, spaces, ``?``, ``#``, ``%41``, ``+``: the URL names exactly that object."""
        write(storage, key, [key.encode()])
        response = httpx.get(sign(key, timedelta(minutes=5)), timeout=30)
        assert response.status_code == 200, response.text[:300]
        assert response.content == key.encode()

    def test_a_link_is_refused_after_its_ttl(self, storage: Storage, sign: Sign) -> None:
        """A link of 2 s works at once and is refused (401/403) once 2 s have passed; where the test
        server does not check expiry, the URL carries the 2 s for the real store to check."""
        write(storage, "linked/short.mp4", [b"short-lived"])
        url = sign("linked/short.mp4", timedelta(seconds=2))
        assert httpx.get(url, timeout=30).content == b"short-lived"
        if self.expiry_param:
            assert httpx.URL(url).params.get_list(self.expiry_param) == ["2"]
            return
        time.sleep(3.5)  # Azure's `se` has whole seconds: up to 1 s early; S3 and GCS round up
        refused = httpx.get(url, timeout=30)
        assert refused.status_code in (401, 403), refused.text[:300]
        assert b"short-lived" not in refused.content
