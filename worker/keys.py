"""Object keys: the configured template filled with path-safe values.

Every value put into the template is one safe path segment: separators, NUL and control
characters become ``_``, ``.``/``..`` cannot appear as a whole segment, and a segment is cut to
200 bytes (with a short hash of the original, so the key stays deterministic and distinct).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from worker.files import StreamFile

_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")
MAX_SEGMENT_BYTES = 200


def safe_segment(value: str) -> str:
    """`value` as one path segment that cannot climb out of its directory."""
    cleaned = _UNSAFE.sub("_", unicodedata.normalize("NFC", value)).strip()
    if cleaned in ("", ".", ".."):
        cleaned = cleaned.replace(".", "_") or "_"
    encoded = cleaned.encode("utf-8", "replace")
    if len(encoded) > MAX_SEGMENT_BYTES:
        tag = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        head = encoded[: MAX_SEGMENT_BYTES - 13].decode("utf-8", "ignore")
        cleaned = f"{head}~{tag}"
    return cleaned


def object_key(template: str, file: StreamFile) -> str:
    """The key (relative to the storage's prefix) that `file` is archived under."""
    values = {
        "call_type": file.call_type,
        "call_id": file.call_id,
        "call_cid": file.call_cid,
        "filename": file.filename,
        "kind": file.kind,
        "session_id": file.session_id or "no-session",
        "recording_type": file.recording_type or file.kind,
        "year": f"{file.end_time.year:04d}",
        "month": f"{file.end_time.month:02d}",
        "day": f"{file.end_time.day:02d}",
    }
    rendered = template.format(**{name: safe_segment(v) for name, v in values.items()})
    return "/".join(part for part in rendered.split("/") if part not in ("", ".", ".."))
