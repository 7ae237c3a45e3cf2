"""Object keys: the configured template filled with path-safe values.

Every value put into the template is one safe path segment, the same for the same value (a retry or
a redelivery writes the same key) and unable to leave its directory on any backend:

- separators (``/``, ``\\``, and what NFKC turns into one: fullwidth solidus U+FF0F, ...), NUL and
  control, format (bidi overrides, zero-width) and unpaired surrogate characters become ``_``;
- the value is NFC-normalised, so NFC/NFD twins give one key on every backend;
- a value that a layer decoding ``%xx`` or applying NFKC could turn into a separator, ``.`` or
  ``..`` (``%2e%2e``, ``．．``, ``a%2fb``) has its ``%`` replaced and is prefixed with ``_``;
- ``.``/``..`` and empty values cannot appear as a whole segment;
- a segment is cut to 200 bytes (and a rendered path segment to 255, NAME_MAX) with a short hash of
  the original, so the key stays deterministic and distinct.
"""

from __future__ import annotations

import hashlib
import unicodedata
from functools import lru_cache
from urllib.parse import unquote

from worker.files import StreamFile

MAX_SEGMENT_BYTES = 200
MAX_PATH_SEGMENT_BYTES = 255  # NAME_MAX of common filesystems
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_DOTS = ("", ".", "..")


@lru_cache(maxsize=4096)
def _unsafe_char(char: str) -> bool:
    if char in "/\\" or unicodedata.category(char) in _UNSAFE_CATEGORIES:
        return True
    compatible = unicodedata.normalize("NFKC", char)
    return "/" in compatible or "\\" in compatible


def _decodes_to_path_syntax(segment: str) -> bool:
    """True when percent-decoding and NFKC (as some S3 tools and filesystems apply them) could turn
    `segment` into a separator, NUL or a dot segment."""
    form = segment
    for _ in range(4):  # "%252e" needs two rounds; more is not a plausible layering
        form = unicodedata.normalize("NFKC", unquote(form))
        if form.strip() in _DOTS or any(c in form for c in "/\\\0"):
            return True
    return False


def _cut(text: str, original: str, limit: int) -> str:
    """`text`, when over `limit` UTF-8 bytes, cut with ``~`` and a hash of `original` appended."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    tag = hashlib.sha256(original.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    head = encoded[: limit - 13].decode("utf-8", "ignore")
    return f"{head}~{tag}"


def _defused(segment: str) -> str:
    """`segment` unchanged, unless decoding could make path syntax of it (then ``_`` + no ``%``)."""
    return "_" + segment.replace("%", "_") if _decodes_to_path_syntax(segment) else segment


def safe_segment(value: str) -> str:
    """`value` as one path segment that cannot climb out of its directory."""
    normal = unicodedata.normalize("NFC", value)
    cleaned = "".join("_" if _unsafe_char(c) else c for c in normal).strip()
    if cleaned in _DOTS:
        cleaned = cleaned.replace(".", "_") or "_"
    return _cut(_defused(cleaned), value, MAX_SEGMENT_BYTES)


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
    parts = (part for part in rendered.split("/") if part not in _DOTS)
    # values side by side in one segment ("{call_type}{call_id}") could still spell "%2f" together
    return "/".join(_cut(_defused(part), part, MAX_PATH_SEGMENT_BYTES) for part in parts)
