"""`archiver storage check NAME`: prove that a storage takes, keeps and gives back an archive.

Like Stream's own "check" of an external storage it writes a small markdown file,
``archiver-check-<uuid>.md``, saying what it is; then it goes further, with the path a real recording
takes: a multipart-sized object of random bytes (a little over ``2 × part_size``, and past the multipart
threshold, so at least three parts) streamed in ``read_chunk`` pieces and committed with the digests the
worker computes (SHA-256 and the storage's native checksum); `stat` must report its size and every
checksum it reports must match; reading it back must give the same size and SHA-256. Last, both probe
files are deleted and must be gone.

Create-only (`worker.storage.create_only`): a second write of other bytes to the note's key must be
refused (KeyTaken) and leave the note as it was. With ``create_only = "condition"`` that proves the
store honours the condition; a store that ignores it fails the check, with the advice to set
``create_only = "head"`` (a store that rejects it fails the first write already, with the same
advice). With ``"head"`` the HEAD refuses the second write, and then the store's own condition is
tried as well: the step says whether the store ignores it, rejects it (HEAD-first is then right) or
honours it (``"condition"`` would then close the race HEAD-first leaves).

Write-once (`worker.storage.write_once`): run by hand (``protect=True``: `archiver storage check`)
on a storage whose settings ask for retention or holds, the check first asks the store whether the
bucket can keep them (`Storage.write_once_problem`: no Object Lock, no versioning, no object
retention, no version-level immutability is named as the reason, ``retention_unsupported``), writes
its note with them, and after reading back proves them: the note carries them, a delete of it is
refused, its holds are released; with a retention period the note is left until it ends, and the
report says so (``CheckReport.kept``). Every other probe object, and every probe of the start-up
check, `archiver doctor` and the health probe, is written without retention (``protect=False``) and
deleted by its exact version, so that they never leave an object behind.

Each step is timed. The check stops at the first failure, with the error's ``reason`` (see
`worker.errors.StorageReason`; ``"other"`` for a mismatch or an unexpected error) and its message, which
names the step and never a credential (backends keep them out of their messages). Probe files are
removed on failure too, as far as the store lets us. Only the `Storage` interface is used, so every
backend gets the same check.
"""

from __future__ import annotations

import copy
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from config import TransferTuning
from worker.errors import KeyTaken, StorageReason, StorageRefused, StorageUnavailable, VerificationFailed
from worker.storage.base import Storage, unprotected
from worker.storage.checksums import Digests, Hasher
from worker.storage.write_once import prove, remove_probe

_MiB = 1024 * 1024
_NOTE = """# archiver storage check

This file was written by `archiver storage check` on {when} to test that the archiver can write
to this storage ({where}). The check deletes it, and `{big}` beside it, when it is done:
if you can read this, the check was interrupted first, or this storage keeps every object for a
retention period and this one is kept until it ends. Both files are safe to delete.
"""


@dataclass(frozen=True)
class CheckStep:
    """One step of the check: its name, whether it passed, how long it took, and what it saw."""

    name: str
    ok: bool
    seconds: float
    detail: str


@dataclass(frozen=True)
class CheckReport:
    """The whole check. ``reason`` and ``message`` say why it failed (None when ``ok``)."""

    storage: str
    described: str
    steps: list[CheckStep]
    ok: bool
    reason: StorageReason | None
    message: str | None
    kept: tuple[tuple[str, datetime], ...] = ()  # probe objects the store keeps (a retention period), and until when


class _Failed(Exception):
    def __init__(self, reason: StorageReason, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


def check_storage(storage: Storage, tuning: TransferTuning, *, protect: bool = False) -> CheckReport:
    """Run the check on `storage` with the part size and chunk size of `tuning`; with `protect` (a check
    run by hand) also its retention and holds, leaving a retained probe behind (see the module
    docstring). Never raises for a storage fault: the report says what failed and why."""
    probe = _Probe(storage, tuning, protect=protect and storage.retention is not None)
    failed: _Failed | None = None
    try:
        probe.run()
    except _Failed as stopped:
        failed = stopped
    finally:
        probe.clean_up()  # before the report: it may find a protected note the store keeps
    return probe.report(failed.reason, failed.message) if failed is not None else probe.report(None, None)


class _Probe:
    """The probe files of one check, and the steps taken so far."""

    def __init__(self, storage: Storage, tuning: TransferTuning, *, protect: bool = False) -> None:
        self.storage, self.tuning, self.protect = storage, tuning, protect
        name = f"archiver-check-{uuid.uuid4()}"
        self.note_key, self.big_key = f"{name}.md", f"{name}.bin"
        self.big_size = max(2 * int(tuning.part_size), int(tuning.multipart_threshold)) + _MiB
        self.native = storage.capabilities.native_checksum
        self.steps: list[CheckStep] = []
        self.attempted: list[str] = []  # keys that may exist: removed at the end whatever happened
        self.digests: dict[str, Digests] = {}
        self.versions: dict[str, str | None] = {}  # the version each commit made (None: unknown, or none)
        self.written_at = datetime.now(UTC)  # when the protected note was written
        self.kept: list[tuple[str, datetime]] = []

    def run(self) -> None:
        """Every step in order. Raises _Failed at the first failure."""
        if self.protect:
            self.step("write-once support", self.supported)
        self.step("write note", self.write_note)
        self.step("write multipart", self.write_big)
        self.step("stat", self.stat)
        self.step("create-only", self.create_only)
        self.step("read back", self.read_back)
        if self.protect:
            self.step("write-once", self.write_once)
        self.step("delete", self.delete)

    def step(self, name: str, action: Callable[[], str]) -> None:
        started = time.monotonic()
        try:
            detail = action()
        except Exception as exc:  # a check reports every failure instead of raising it
            reason, message = _reason(exc), f"{name}: {exc}"
            self.steps.append(CheckStep(name, False, time.monotonic() - started, message))
            raise _Failed(reason, message) from exc
        self.steps.append(CheckStep(name, True, time.monotonic() - started, detail))

    def supported(self) -> str:
        """The bucket can keep the retention and holds asked. Raises StorageRefused (retention_unsupported)."""
        problem = self.storage.write_once_problem()
        if problem is not None:
            raise StorageRefused(f"{problem}; the settings ask every object to carry {self.storage.retention}",
                                 reason="retention_unsupported")
        return f"the bucket can keep {self.storage.retention}"

    def write_note(self) -> str:
        self.written_at = datetime.now(UTC)
        when = self.written_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        text = _NOTE.format(when=when, where=self.storage.describe(), big=self.big_key).encode()
        self._write(self.note_key, "text/markdown; charset=utf-8", iter([text]), protect=self.protect)
        carries = f", with {self.storage.retention}" if self.protect else ""
        return f"{self.note_key}: {len(text)} bytes{carries}"

    def write_big(self) -> str:
        digests = self._write(self.big_key, "application/octet-stream", self._random_chunks())
        part_size, parts = int(self.tuning.part_size), ""
        if self.storage.capabilities.multipart:
            parts = f" ({-(-digests.size // part_size)} parts of {part_size})"
        native = f", {self.native} {digests.get(self.native)}" if self.native else ""
        return f"{self.big_key}: {digests.size} bytes{parts}{native}"

    def stat(self) -> str:
        return f"note: {self._stat(self.note_key)}; multipart: {self._stat(self.big_key)}"

    def _stat(self, key: str) -> str:
        """Size and every reported checksum must match what was written. Raises VerificationFailed."""
        stored = self.storage.stat(key)
        problem = stored.mismatch(self.digests[key])
        if problem:
            raise VerificationFailed(problem)
        reported = ", ".join(f"{name} matches" for name in sorted(stored.checksums)) or "no checksum reported"
        if key == self.big_key and self.native and self.native not in stored.checksums:
            reported += f"; the store did not report its {self.native}"
        return f"{stored.size} bytes, {reported}"

    def create_only(self) -> str:
        """A second write to the note's key is refused and the note is intact (see the module docstring).
        Raises StorageRefused when the store let it through, VerificationFailed when the note changed."""
        mode = self.storage.create_only
        if self._write_again(self.storage) is None:
            raise StorageRefused(
                f"a second write to {self.note_key} was not refused: the store ignores the create-only condition "
                f'and replaced the object; set create_only = "head" for this storage (a HEAD first: weaker)')
        self._stat(self.note_key)
        done = f'a second write to {self.note_key} was refused (create_only = "{mode}"), the note is intact'
        if mode == "condition":
            return done
        condition = copy.copy(self.storage)  # a view writing with the store's condition, sharing its client
        condition.create_only = "condition"
        try:
            refused = self._write_again(condition)
        except Exception as exc:  # a store rejecting the condition: that is the finding, not a failure
            return f"{done}; the store rejects the create-only condition ({exc}): HEAD-first is right for it"
        if refused is None:
            return f"{done}; the store ignores the create-only condition: HEAD-first is right for it"
        return (f'{done}; the store honours the create-only condition: create_only = "condition" would close '
                "the race a HEAD first leaves")

    def _write_again(self, storage: Storage) -> KeyTaken | None:
        """Write other bytes to the note's key, create-only: the refusal, or None when it went through."""
        body = b"a second write to this key, which a create-only write must refuse\n"
        hasher = Hasher((self.native,) if self.native else ())
        hasher.update(body)
        try:
            with storage.open_writer(self.note_key, content_type="text/plain", metadata={},
                                     **unprotected(storage)) as writer:
                writer.write(body)
                writer.commit(hasher.digests())
        except KeyTaken as exc:
            return exc
        return None

    def read_back(self) -> str:
        hasher = Hasher((self.native,) if self.native else ())
        for chunk in self.storage.read(self.big_key, int(self.tuning.read_chunk)):
            hasher.update(chunk)
        got, sent = hasher.digests(), self.digests[self.big_key]
        if got != sent:
            raise VerificationFailed(
                f"{self.big_key} reads back as {got.size} bytes with SHA-256 {got.sha256}, "
                f"{sent.size} bytes with SHA-256 {sent.sha256} were written"
            )
        return f"{got.size} bytes, SHA-256 {got.sha256} as written"

    def write_once(self) -> str:
        """The note carries the retention and holds, its deletion is refused, its holds are released
        (`worker.storage.write_once.prove`)."""
        assert self.storage.retention is not None  # self.protect says so
        proof = prove(self.storage, self.storage.retention, self.note_key, self.written_at)
        if proof.kept is not None:
            self.kept.append(proof.kept)
            self.attempted.remove(self.note_key)  # the store keeps it: neither the delete step nor clean-up try
        return proof.detail

    def delete(self) -> str:
        keys = [key for key in (self.note_key, self.big_key) if key in self.attempted]
        for key in keys:
            remove_probe(self.storage, key, self.versions.get(key))
        for key in keys:
            try:
                self.storage.stat(key)
            except FileNotFoundError:
                continue
            raise VerificationFailed(f"{key} is still there after delete")
        self.attempted.clear()
        if len(keys) == 1:
            return f"{keys[0]} deleted, and gone ({self.note_key} stays until its retention ends)"
        return "both probe files deleted, and gone"

    def clean_up(self) -> None:
        """Best effort: delete whatever may have been written; errors are not the check's result (a
        protected note the store refuses to delete is reported kept)."""
        for key in self.attempted:
            try:
                remove_probe(self.storage, key, self.versions.get(key))
            except Exception:  # noqa: BLE001 - the failure that stopped the check is what matters
                if self.protect and key == self.note_key and self.storage.retention is not None:
                    until = self.storage.retention.until(self.written_at)
                    self.kept.extend([(key, until)] if until is not None else [])

    def report(self, reason: StorageReason | None, message: str | None) -> CheckReport:
        return CheckReport(self.storage.name, self.storage.describe(), list(self.steps), reason is None, reason,
                           message, tuple(self.kept))  # fmt: skip

    def _write(self, key: str, content_type: str, chunks: Iterator[bytes], *, protect: bool = False) -> Digests:
        hasher = Hasher((self.native,) if self.native else ())
        metadata = {"purpose": "archiver-storage-check"}
        extra = {} if protect else unprotected(self.storage)
        with self.storage.open_writer(key, content_type=content_type, metadata=metadata, **extra) as writer:
            for chunk in chunks:
                hasher.update(chunk)
                writer.write(chunk)
            self.attempted.append(key)  # commit may succeed at the store even if its answer is lost
            self.digests[key] = hasher.digests()
            self.versions[key] = writer.commit(self.digests[key]).version
        return self.digests[key]

    def _random_chunks(self) -> Iterator[bytes]:
        chunk, left = int(self.tuning.read_chunk), self.big_size
        while left > 0:
            yield os.urandom(min(chunk, left))
            left -= chunk


def _reason(exc: Exception) -> StorageReason:
    if isinstance(exc, StorageRefused | StorageUnavailable):
        return exc.reason
    return "other"
