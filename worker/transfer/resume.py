"""Resuming an upload across attempts: a transfer cut short by a crash, a deploy or a lost lease goes
on, in its next attempt and in any process, from what the store durably holds of its upload.

* **Checkpoints.** After each write the copy asks the writer what the store holds durably
  (`ObjectWriter.durable`: S3 parts, a GCS session's persisted bytes, Azure staged blocks, a local
  temporary file fsynced); once that grew by ``resume_checkpoint`` bytes since the last record, the
  `UploadState` is recorded in the ledger (``upload:<tid>``, `Heartbeat.save_upload`), fenced by the
  claim's token: a worker that lost its lease cannot point the next attempt at its upload.
* **Resume.** An attempt that finds a record asks the storage for a writer that goes on from it
  (`Storage.resume_writer`: it checks that the store still holds every piece, with the same
  create-only condition, retention and holds at commit as a fresh writer). The download still starts
  at byte 0, as any (in parallel ranges when large): the bytes below the record's offset go into the
  SHA-256 and the native checksum and are checked, piece by piece, against the CRC32C each piece was
  sent with, but are not written again; the rest is written. No record, a record the store no longer
  holds, or one larger than the file: a fresh writer, and the record is deleted.
* **Why the SHA-256 is the object's.** The store holds the pieces whose CRC32C the writer computed from
  the bytes it sent (on local disk, checked again against the temporary file when it is re-opened).
  The bytes re-read from the source must give each piece's CRC32C, or the resumed upload is aborted
  and the file uploaded afresh (`PrefixDiffers`, logged ``upload_resume_refused``): what the SHA-256
  covers is what the store holds, but for a change of the source between two attempts that keeps
  every piece's CRC32C (2^-32 per piece for an accidental one). On S3 and GCS the store checks the
  whole object's CRC32C, computed over the bytes re-read, at commit as well. Local disk could re-hash
  its temporary file instead; it takes the source too, so that every backend resumes the same way.
* **The end of an attempt.** Committed: the record goes with the transfer's final state (`Ledger.finish`
  deletes it). Left uncommitted by a transient error or a lost lease (the transfer is queued again or
  taken over) with a record pointing at it: the writer is detached (`ObjectWriter.detach`), the store
  keeps the pieces. A permanent error, a key taken, a source that changed (`RangeIgnored`,
  `PrefixDiffers`): aborted, and the record deleted.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

import structlog

from worker.errors import PermanentError
from worker.storage.base import ObjectWriter, Piece, UploadState
from worker.storage.checksums import b64, new_crc32c
from worker.transfer.ranged import RangeIgnored

if TYPE_CHECKING:
    from worker.transfer.stream_copy import CopyJob

log = structlog.get_logger(__name__)


class PrefixDiffers(Exception):
    """The source's bytes below the resumed offset are not the upload's pieces: start afresh."""


class Upload:
    """One attempt's writer (see the module docstring): `write` takes every byte of the file, from 0."""

    def __init__(self, job: CopyJob, size: int | None, record: str | None) -> None:
        self._job, self._record = job, record
        self._every = int(job.runtime.archive.transfer.resume_checkpoint)
        self.writer, state = self._open(size, record)
        self.offset = state.offset if state is not None else 0
        self._saved = self.offset  # the offset of the ledger's record: what a later attempt goes on from
        self._recorded = state is not None  # the ledger's record names this writer's upload
        self._pieces: list[Piece] = list(state.pieces) if state is not None else []
        self._at = 0  # bytes of the file taken so far
        self._piece_got, self._crc = 0, new_crc32c()

    def _open(self, size: int | None, record: str | None) -> tuple[ObjectWriter, UploadState | None]:
        job = self._job
        if record is not None:
            state, refused = _parse(record, size)
            if state is not None:
                writer = job.storage.resume_writer(job.key, state, content_type=job.content_type,
                                                   metadata=job.metadata, size_hint=size, overwrite=job.overwrite)
                if writer is not None:
                    log.info("upload_resumed", offset=state.offset, pieces=len(state.pieces))
                    return writer, state
                refused = "the store no longer holds it"
            log.warning("upload_resume_refused", reason=refused)
            job.lease.save_upload("")  # a fresh upload: nothing to resume any more
        return job.storage.open_writer(job.key, content_type=job.content_type, metadata=job.metadata, size_hint=size,
                                       overwrite=job.overwrite), None

    def write(self, chunk: bytes) -> None:
        """The file's next bytes: those below the resumed offset checked, the others written."""
        if self._at < self.offset:
            below = chunk[:self.offset - self._at]
            self._check(below)
            self._at += len(below)
            chunk = chunk[len(below):]
            if not chunk:
                return
        self.writer.write(chunk)
        self._at += len(chunk)
        self._checkpoint()

    def _check(self, data: bytes) -> None:
        while data:
            piece = self._pieces[0]
            part = data[:piece.size - self._piece_got]
            self._crc.update(part)
            self._piece_got += len(part)
            data = data[len(part):]
            if self._piece_got == piece.size:
                if b64(self._crc.digest()) != piece.crc32c:
                    raise PrefixDiffers(f"the source's bytes {self._at + len(part) - piece.size}.. differ from "
                                        "the piece the store holds (the source changed?)")
                self._pieces.pop(0)
                self._piece_got, self._crc = 0, new_crc32c()

    def _checkpoint(self) -> None:
        state = self.writer.durable()
        if state is not None and state.offset - self._saved >= self._every:
            self._job.lease.save_upload(state.to_json())
            self._saved, self._recorded = state.offset, True

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.writer.committed:
            return
        if self._recorded and exc is not None and not isinstance(exc, (PermanentError, RangeIgnored, PrefixDiffers)):
            self.writer.detach()
            log.info("upload_detached", offset=self._saved)
            return
        self.writer.abort()
        if self._recorded:
            try:
                self._job.lease.save_upload("")
            except Exception as failure:  # noqa: BLE001 - never hides the error that ended the copy
                log.warning("upload_record_kept", error=str(failure))


def _parse(record: str, size: int | None) -> tuple[UploadState | None, str]:
    """The record's UploadState, or None and why it cannot be resumed."""
    try:
        state = UploadState.from_json(record)
    except ValueError as exc:
        return None, str(exc)
    if size is not None and state.offset > size:
        return None, f"the record's {state.offset} bytes are more than the file's {size}"
    return state, ""
