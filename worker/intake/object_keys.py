"""Object keys: the configured template filled with path-safe values, one key per distinct file.

Every value put into the template is one safe path segment, the same for the same value (a retry or
a redelivery writes the same key) and unable to leave its directory on any backend:

- separators (``/``, ``\\``, and what NFKC turns into one: fullwidth solidus U+FF0F, ...), NUL and
  control, format (bidi overrides, zero-width) and unpaired surrogate characters become ``_``;
- the value is NFC-normalised and stripped of surrounding white space;
- a value that a layer decoding ``%xx`` or applying NFKC could turn into a separator, ``.`` or
  ``..`` (``%2e%2e``, ``．．``, ``a%2fb``) has its ``%`` replaced and is prefixed with ``_``;
- ``.``/``..`` and empty values cannot appear as a whole segment, and no segment ends in ``.``
  (Azure refuses such a segment, Windows file systems drop the dot);
- a segment is cut to 200 bytes (and a rendered path segment to 255, NAME_MAX).

Injective: a value that had to be changed by any of these rules carries ``~h`` and 8 hex digits of
the SHA-256 of the *original* value, before its extension (``rec_a_b~h1a2b3c4d.mp4`` for
``rec_a\\b.mp4``), so two values that clean to the same text still get two keys. A value kept as it
is (every name Stream gives, ``rec_<type>_<id>_<ts>.mp4``) never contains that mark: a name that
does is treated as changed too, so it cannot pass for another name's safe form. What a hash
collision or an operator's template (values side by side in one segment) still merges, the ledger
catches at intake (`worker.ledger.store`: each key has one owner file).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache
from urllib.parse import unquote

from worker.files import StreamFile

MAX_SEGMENT_BYTES = 200
MAX_PATH_SEGMENT_BYTES = 255  # NAME_MAX of common filesystems
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_DOTS = ("", ".", "..")
_MARK = re.compile(r"~h[0-9a-f]{8}")
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,8}$")
_TRAILING_DOTS = re.compile(r"\.+$")


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


def _storable(segment: str) -> str:
    """`segment` made safe as it stands: no decodable path syntax (then ``_`` + no ``%``), no
    trailing dot (each becomes ``_``)."""
    if _decodes_to_path_syntax(segment):
        segment = "_" + segment.replace("%", "_")
    return _TRAILING_DOTS.sub(lambda dots: "_" * len(dots.group()), segment)


def hash_tag(original: str) -> str:
    """``~h`` and 8 hex digits of the SHA-256 of `original`: what marks a changed value."""
    return "~h" + hashlib.sha256(original.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def with_tag(text: str, tag: str, limit: int) -> str:
    """`text` with `tag` before its extension, the stem cut so the whole fits in `limit` bytes."""
    extension = _EXTENSION.search(text)
    start = extension.start() if extension and extension.start() > 0 else len(text)
    stem, suffix = text[:start], text[start:]
    room = limit - len(tag.encode()) - len(suffix.encode())
    return stem.encode("utf-8")[:room].decode("utf-8", "ignore") + tag + suffix


def _kept_or_tagged(cleaned: str, original: str, limit: int) -> str:
    """`original` itself when the rules left it alone (and it fits); else `cleaned`, tagged."""
    if cleaned == original and len(original.encode("utf-8")) <= limit and not _MARK.search(original):
        return original
    return with_tag(cleaned, hash_tag(original), limit)


def safe_segment(value: str) -> str:
    """`value` as one path segment that cannot climb out of its directory (see the module docstring)."""
    normal = unicodedata.normalize("NFC", value)
    cleaned = "".join("_" if _unsafe_char(c) else c for c in normal).strip()
    if cleaned in _DOTS:
        cleaned = cleaned.replace(".", "_") or "_"
    return _kept_or_tagged(_storable(cleaned), value, MAX_SEGMENT_BYTES)


def _safe_part(part: str) -> str:
    """A rendered path segment: safe values side by side may still spell ``%2f`` together, or end
    in the template's own ``.``."""
    fixed = _storable(part)
    if fixed == part and len(part.encode("utf-8")) <= MAX_PATH_SEGMENT_BYTES:
        return part  # values are already tagged where changed: only what the join broke is
    return with_tag(fixed, hash_tag(part), MAX_PATH_SEGMENT_BYTES)


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
    return "/".join(_safe_part(part) for part in rendered.split("/") if part not in _DOTS)


def key_of_another_owner(key: str, file_id: str) -> str:
    """`key` for a second file that maps to it (a hash collision, or a template that sets values side
    by side): its last segment tagged with a hash of `file_id`. The ledger gives it at intake when
    another file owns `key` already."""
    head, _, last = key.rpartition("/")
    tagged = with_tag(last, hash_tag(file_id), MAX_PATH_SEGMENT_BYTES)
    return f"{head}/{tagged}" if head else tagged
