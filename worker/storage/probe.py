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
from worker.storage.base import Storage
from worker.storage.checksums import Digests, Hasher

_MiB = 1024 * 1024
_NOTE = """# archiver storage check

This file was written by `archiver storage check` on {when} to test that the archiver can write
to this storage ({where}). The check deletes it, and `{big}` beside it, when it is done:
if you can read this, the check was interrupted first. Both files are safe to delete.
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


class _Failed(Exception):
    def __init__(self, reason: StorageReason, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


def check_storage(storage: Storage, tuning: TransferTuning) -> CheckReport:
    """Run the check on `storage` with the part size and chunk size of `tuning`. Never raises for a
    storage fault: the report says what failed and why."""
    probe = _Probe(storage, tuning)
    try:
        probe.run()
    except _Failed as failed:
        return probe.report(failed.reason, failed.message)
    finally:
        probe.clean_up()
    return probe.report(None, None)


class _Probe:
    """The probe files of one check, and the steps taken so far."""

    def __init__(self, storage: Storage, tuning: TransferTuning) -> None:
        self.storage, self.tuning = storage, tuning
        name = f"archiver-check-{uuid.uuid4()}"
        self.note_key, self.big_key = f"{name}.md", f"{name}.bin"
        self.big_size = max(2 * int(tuning.part_size), int(tuning.multipart_threshold)) + _MiB
        self.native = storage.capabilities.native_checksum
        self.steps: list[CheckStep] = []
        self.attempted: list[str] = []  # keys that may exist: removed at the end whatever happened
        self.digests: dict[str, Digests] = {}

    def run(self) -> None:
        """Every step in order. Raises _Failed at the first failure."""
        self.step("write note", self.write_note)
        self.step("write multipart", self.write_big)
        self.step("stat", self.stat)
        self.step("create-only", self.create_only)
        self.step("read back", self.read_back)
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

    def write_note(self) -> str:
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        text = _NOTE.format(when=when, where=self.storage.describe(), big=self.big_key).encode()
        self._write(self.note_key, "text/markdown; charset=utf-8", iter([text]))
        return f"{self.note_key}: {len(text)} bytes"

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
            with storage.open_writer(self.note_key, content_type="text/plain", metadata={}) as writer:
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

    def delete(self) -> str:
        for key in (self.note_key, self.big_key):
            self.storage.delete(key)
        for key in (self.note_key, self.big_key):
            try:
                self.storage.stat(key)
            except FileNotFoundError:
                continue
            raise VerificationFailed(f"{key} is still there after delete")
        self.attempted.clear()
        return "both probe files deleted, and gone"

    def clean_up(self) -> None:
        """Best effort: delete whatever may have been written; errors are not the check's result."""
        for key in self.attempted:
            try:
                self.storage.delete(key)
            except Exception:  # noqa: S110 - the failure that stopped the check is what matters
                pass

    def report(self, reason: StorageReason | None, message: str | None) -> CheckReport:
        return CheckReport(self.storage.name, self.storage.describe(), list(self.steps), reason is None, reason,
                           message)  # fmt: skip

    def _write(self, key: str, content_type: str, chunks: Iterator[bytes]) -> Digests:
        hasher = Hasher((self.native,) if self.native else ())
        metadata = {"purpose": "archiver-storage-check"}
        with self.storage.open_writer(key, content_type=content_type, metadata=metadata) as writer:
            for chunk in chunks:
                hasher.update(chunk)
                writer.write(chunk)
            self.attempted.append(key)  # commit may succeed at the store even if its answer is lost
            self.digests[key] = hasher.digests()
            writer.commit(self.digests[key])
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
