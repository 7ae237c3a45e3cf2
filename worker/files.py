"""What the archiver moves: a file Stream holds, identified by (call_cid, kind, filename).

Stream's filenames carry a timestamp and are unique within a call; older payloads have no
``session_id``, so it is an attribute, not part of the identity. A transfer is one file to one
storage, and its id is derived from the file identity and the storage name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

Kind = Literal["recording", "transcription"]
KINDS: tuple[Kind, ...] = ("recording", "transcription")


def _digest(*parts: str) -> str:
    joined = "\x1f".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(joined, digest_size=12).hexdigest()


@dataclass(frozen=True)
class StreamFile:
    """One recording or transcription, as a ready event (or ListRecordings) describes it."""

    call_cid: str
    kind: Kind
    filename: str
    url: str
    start_time: datetime
    end_time: datetime
    session_id: str | None = None
    recording_type: str | None = None
    egress_id: str | None = None
    # When `url` was signed, as far as the archiver knows: the ready event's `created_at` (Stream's
    # event time); None for a URL Stream's API just listed (newer than any event's). Not identity:
    # the ledger keeps the URL of the newest event, so a replayed old delivery never replaces it.
    url_at: datetime | None = field(default=None, compare=False)

    @property
    def call_type(self) -> str:
        return self.call_cid.split(":", 1)[0]

    @property
    def call_id(self) -> str:
        return self.call_cid.split(":", 1)[1]

    @property
    def file_id(self) -> str:
        """Deterministic id of the file: the same for every delivery of it."""
        return "f_" + _digest(self.call_cid, self.kind, self.filename)

    def expires_at(self, retention: timedelta) -> datetime:
        """When Stream deletes the file: `retention` (two weeks) after the recording ended."""
        return self.end_time + retention


def transfer_id(file_id: str, storage: str) -> str:
    """Deterministic id of a transfer: one file to one storage."""
    return "t_" + _digest(file_id, storage)


CONTENT_TYPES = {
    "mp4": "video/mp4",
    "mp3": "audio/mpeg",
    "mkv": "video/x-matroska",
    "webm": "video/webm",
    "zip": "application/zip",
    "jsonl": "application/jsonl",
    "json": "application/json",
}


def content_type_for(filename: str) -> str:
    """The content type Stream's file extensions stand for (octet-stream when unknown)."""
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return CONTENT_TYPES.get(extension, "application/octet-stream")
