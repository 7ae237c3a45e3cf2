"""What the archiver moves: a file Stream holds, identified by (call_cid, kind, filename).

Stream's filenames carry a timestamp and are unique within a call; older payloads have no
``session_id``, so it is an attribute, not part of the identity. A transfer is one file to one
storage, and its id is derived from the file identity and the storage name.

The kinds of file (`ARTEFACT_KINDS`) are one table: every name Stream and the archiver give a
kind (its webhook events, where its ready event carries it, its section of Stream's API, what is
logged about it) is written there and nowhere else. A new kind is one entry there (and its name in
`config.types.Kind`, which the `kinds` setting is checked against). A kind Stream has no listing for
(``frame_recording``: its events are the only word of it) has no `api_section`: discovery passes it
over, no fresh URL can be asked for, and it is never deleted from Stream. A kind whose file Stream's
API serves itself (``stats_report``: GetCallReport) has an `api_source` and no URL: the transfer
fetches it from the API (`worker.transfer.api_source`), and its filename is made of its session.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from config.types import Kind as Kind  # the names; the settings' `kinds` takes them too


@dataclass(frozen=True)
class ArtefactKind:
    """One kind of file Stream makes of a call, and its names (``shared/stream-api.md`` §1, §4.1)."""

    name: Kind  # as the ledger, the CLI's --kinds, the `kinds` setting and the logs spell it
    ready_event: str  # the webhook event announcing a file of this kind
    payload_key: str | None  # the ready event's field holding the file; None: the event's own fields
    failure_event: str | None = None  # the webhook event saying that one will never arrive
    api_section: str | None = None  # Stream's List/Delete path segment and the key of List's answer; None: no listing
    failed_log_event: str | None = None  # logged (as an error) when Stream reports a failure
    filename_field: str | None = "filename"  # None: the filename is the last path segment of the URL
    time_fields: tuple[str, str] = ("start_time", "end_time")  # the file's fields of its start and end
    # Stream's API path under the call that answers with the file itself (``?session_id=``); None: a signed URL
    api_source: str | None = None
    filename_format: str | None = None  # the filename of a file Stream names not: made of its session_id

    def session_filename(self, session_id: str) -> str:
        """The filename of this kind's file of `session_id` (a kind with a `filename_format`)."""
        assert self.filename_format is not None
        return self.filename_format.format(session_id=session_id)


ARTEFACT_KINDS: tuple[ArtefactKind, ...] = (
    ArtefactKind(name="recording", ready_event="call.recording_ready", failure_event="call.recording_failed",
                 payload_key="call_recording", api_section="recordings",
                 failed_log_event="stream_recording_failed"),
    ArtefactKind(name="transcription", ready_event="call.transcription_ready",
                 failure_event="call.transcription_failed", payload_key="call_transcription",
                 api_section="transcriptions", failed_log_event="stream_transcription_failed"),
    ArtefactKind(name="frame_recording", ready_event="call.frame_recording_ready", payload_key=None,
                 filename_field=None, time_fields=("captured_at", "captured_at")),
    ArtefactKind(name="stats_report", ready_event="call.stats_report_ready", payload_key=None,
                 filename_field=None, time_fields=("created_at", "created_at"), api_source="report",
                 filename_format="stats_report_{session_id}.json"),
)
KINDS: tuple[Kind, ...] = tuple(k.name for k in ARTEFACT_KINDS)
LISTED_KINDS: tuple[Kind, ...] = tuple(k.name for k in ARTEFACT_KINDS if k.api_section is not None)
"""The kinds Stream lists (discovery's, backfill's and reconciliation's); the others come by event only."""
_BY_NAME: dict[str, ArtefactKind] = {k.name: k for k in ARTEFACT_KINDS}
_BY_READY_EVENT = {k.ready_event: k for k in ARTEFACT_KINDS}
_BY_FAILURE_EVENT = {k.failure_event: k for k in ARTEFACT_KINDS if k.failure_event is not None}


def artefact(name: str) -> ArtefactKind:
    """The kind called `name` (as the ledger stores it); ValueError for any other: a kind this
    version does not know is never taken for a recording."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown kind of file {name!r} (known: {', '.join(KINDS)})") from None


def ready_artefact(event_type: str) -> ArtefactKind | None:
    """The kind whose ready event is `event_type`, or None."""
    return _BY_READY_EVENT.get(event_type)


def failed_artefact(event_type: str) -> ArtefactKind | None:
    """The kind whose failure event is `event_type`, or None."""
    return _BY_FAILURE_EVENT.get(event_type)


def listing(kind: Kind) -> str:
    """Stream's API section listing (and deleting) files of `kind`; ValueError when Stream has none."""
    section = artefact(kind).api_section
    if section is None:
        raise ValueError(f"Stream has no listing of {kind} files")
    return section


def filename_in(url: str) -> str:
    """The last path segment of `url` (as it is written, query aside): "" when the path ends in "/"."""
    return urlsplit(url).path.rsplit("/", 1)[-1]


def _digest(*parts: str) -> str:
    joined = "\x1f".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(joined, digest_size=12).hexdigest()


@dataclass(frozen=True)
class StreamFile:
    """One file of a kind (a recording, a transcription, a frame), as a ready event (or a listing) describes it."""

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
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
}


def content_type_for(filename: str) -> str:
    """The content type Stream's file extensions stand for (octet-stream when unknown)."""
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return CONTENT_TYPES.get(extension, "application/octet-stream")
