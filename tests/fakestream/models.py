"""Data model of the fake Stream: stored files, calls, and time/filename helpers.

Everything here is plain data plus pure functions; the HTTP servers live in
``cdn.py`` and ``api.py`` and the shared mutable state in ``store.py``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

TimestampFormat = Literal["rfc3339", "ns"]
FileKind = Literal["recording", "transcription", "frame_recording"]  # frames: no listing, events only

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CHUNK_SIZE = 1 << 20  # 1 MiB: read/write granularity for file bodies
RECORDING_TYPES = ("composite", "individual", "raw")

CONTENT_TYPES: dict[str, str] = {
    ".mp4": "video/mp4",
    ".mp3": "audio/mpeg",
    ".mkv": "video/x-matroska",
    ".zip": "application/zip",
    ".jsonl": "application/jsonl",
    ".jpg": "image/jpeg",
    ".png": "image/png",
}
_CDN_FOLDERS: dict[str, str] = {"recording": "recordings", "transcription": "transcriptions",
                                "frame_recording": "frames"}

_RFC3339 = re.compile(
    r"^(?P<base>\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d{1,9}))?"
    r"(?P<tz>[Zz]|[+-]\d{2}:\d{2})$"
)


# --------------------------------------------------------------------------- time helpers


def utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime (naive values are taken to be UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def now_utc() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def to_unix_ns(value: datetime | int) -> int:
    """Integer nanoseconds since the epoch, exact for datetimes (no float rounding)."""
    if isinstance(value, int):
        return value
    return (utc(value) - EPOCH) // timedelta(microseconds=1) * 1000


def from_unix_ns(ns: int) -> datetime:
    """Aware UTC datetime for integer nanoseconds (sub-microsecond part is dropped)."""
    return EPOCH + timedelta(microseconds=ns // 1000)


def to_unix_ms(value: datetime) -> int:
    """Integer milliseconds since the epoch (as used in Stream's filenames)."""
    return to_unix_ns(value) // 1_000_000


def format_rfc3339(value: datetime | int) -> str:
    """Go ``time.RFC3339Nano`` style UTC string: up to 9 fraction digits, trailing zeros trimmed.

    An ``int`` is taken as nanoseconds since the epoch, which keeps all 9 digits
    (e.g. ``2025-10-12T20:46:10.123456789Z``).
    """
    ns = to_unix_ns(value)
    seconds, frac_ns = divmod(ns, 1_000_000_000)
    base = (EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{frac_ns:09d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def format_timestamp(value: datetime | int, fmt: TimestampFormat) -> str | int:
    """Write a date-time the way Stream does in ``fmt``: RFC 3339 string or integer nanoseconds."""
    return to_unix_ns(value) if fmt == "ns" else format_rfc3339(value)


def parse_timestamp(value: object) -> datetime:
    """Parse an RFC 3339 string (1-9 fraction digits) or integer nanoseconds; raise ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"not a date-time: {value!r}")
    if isinstance(value, int):
        return from_unix_ns(value)
    if not isinstance(value, str):
        raise ValueError(f"not a date-time: {value!r}")
    match = _RFC3339.match(value)
    if match is None:
        raise ValueError(f"not an RFC 3339 date-time: {value!r}")
    frac = (match["frac"] or "").ljust(6, "0")[:6]
    tz = "+00:00" if match["tz"] in ("Z", "z") else match["tz"]
    return utc(datetime.fromisoformat(f"{match['base'].replace(' ', 'T')}.{frac}{tz}"))


# --------------------------------------------------------------------------- ids and names


def new_session_id() -> str:
    """A call session id, shaped like Stream's (a UUID)."""
    return str(uuid.uuid4())


def new_egress_id() -> str:
    """An opaque egress id shaped like the samples' ``EG_...``."""
    return "EG_" + secrets.token_urlsafe(9).replace("-", "x").replace("_", "y")


def split_cid(call_cid: str) -> tuple[str, str]:
    """Split ``"<type>:<id>"`` at the first colon; raise ValueError when there is none."""
    call_type, sep, call_id = call_cid.partition(":")
    if not sep or not call_type or not call_id:
        raise ValueError(f"call_cid must look like '<type>:<id>', got {call_cid!r}")
    return call_type, call_id


def default_filename(
    kind: FileKind,
    call_cid: str,
    start_time: datetime,
    *,
    recording_type: str | None = "composite",
    audio_only: bool = False,
    participant: str = "user-1",
) -> str:
    """Filename following Stream's observed patterns (see stream-api.md section 5)."""
    call_type, call_id = split_cid(call_cid)
    stem, ms = f"{call_type}_{call_id}", to_unix_ms(start_time)
    if kind == "transcription":
        return f"transcript_{stem}_{ms}.jsonl"
    if kind == "frame_recording":
        return f"frame_{stem}_{participant}_{ms}.jpg"
    if recording_type == "individual":
        return f"rec_{stem}_{participant}_{ms}.mkv"
    if recording_type == "raw":
        return f"rec_{stem}_raw_{ms}.zip"
    if audio_only:
        return f"rec_{stem}_audio_{ms}.mp3"
    return f"rec_{stem}_720p_{ms}.mp4"


def content_type_for(filename: str) -> str:
    """MIME type the CDN sends for ``filename``, chosen by extension."""
    return CONTENT_TYPES.get(Path(filename).suffix.lower(), "application/octet-stream")


def cdn_path_for(app_id: int, kind: FileKind, call_cid: str, filename: str) -> str:
    """URL-escaped CDN path: ``/{app_id}/video/{recordings|transcriptions|frames}/{type}_{id}/{filename}``
    (the frames folder is a guess: no example of a frame's URL is published)."""
    call_type, call_id = split_cid(call_cid)
    folder = _CDN_FOLDERS[kind]
    return f"/{app_id}/video/{folder}/{quote(f'{call_type}_{call_id}', safe='')}/{quote(filename, safe='')}"


def digest_content(content: bytes | Path) -> tuple[int, str, str]:
    """Return ``(size, sha256 hex, md5 hex)`` of bytes or of a file read in 1 MiB chunks."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    if isinstance(content, bytes):
        sha.update(content)
        md5.update(content)
        return len(content), sha.hexdigest(), md5.hexdigest()
    size = 0
    with content.open("rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            size += len(chunk)
            sha.update(chunk)
            md5.update(chunk)
    return size, sha.hexdigest(), md5.hexdigest()


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, eq=False)
class StoredFile:
    """One recording, transcription or frame held by the fake (identity = call_cid, kind, filename)."""

    call_cid: str
    kind: FileKind
    filename: str
    session_id: str | None
    recording_type: str | None
    start_time: datetime
    end_time: datetime
    content: bytes | Path = field(repr=False)
    size: int
    sha256: str
    url: str = field(repr=False)
    egress_id: str = ""
    etag: str = ""  # quoted MD5 hex, as S3 sends it
    cdn_path: str = ""  # URL-escaped path of the file on the CDN host
    track_type: str | None = None  # a frame's: TRACK_TYPE_VIDEO or TRACK_TYPE_SCREEN_SHARE
    users: tuple[str, ...] = ()  # a frame's: the ids of the users in it

    @property
    def call_type(self) -> str:
        """The ``type`` half of ``call_cid``."""
        return split_cid(self.call_cid)[0]

    @property
    def call_id(self) -> str:
        """The ``id`` half of ``call_cid``."""
        return split_cid(self.call_cid)[1]

    @property
    def content_type(self) -> str:
        """MIME type the CDN serves this file with."""
        return content_type_for(self.filename)

    def read_bytes(self) -> bytes:
        """The whole content (reads the file for Path content; meant for small test files)."""
        return self.content if isinstance(self.content, bytes) else self.content.read_bytes()


@dataclass
class CallRecord:
    """A call known to the fake (what GetCall / QueryCalls return)."""

    call_type: str
    call_id: str
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    session_id: str
    custom: dict[str, Any] = field(default_factory=dict)
    created_by_id: str = "host-1"

    @property
    def cid(self) -> str:
        """``"<type>:<id>"``."""
        return f"{self.call_type}:{self.call_id}"
