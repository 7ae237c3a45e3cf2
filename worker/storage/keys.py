"""The one rule every backend applies to the keys it is given, before touching anything.

A key is *relative* and ``/``-separated: ``call_type/call_id/file.mp4``. Any byte sequence a
filesystem and S3 both accept is allowed inside a segment (unicode, spaces, ``?``, ``#``, ``%41``,
``+``), but not the shapes that mean something else to one of them:

- empty key, or an empty segment (``a//b``, ``/abs``, ``a/``): S3 would keep it, a filesystem would
  collapse it, so the same key would name different objects on different backends;
- ``.`` or ``..`` segments: path traversal on a filesystem, and rewritten by some S3 clients;
- NUL (no filesystem accepts it) and backslash (a separator on Windows and in some S3 tools).

Backends call `check_key` first, then their own rules (what each store cannot hold: Azure a segment
ending in ``.``, GCS CR/LF, every cloud store more than 1024 bytes, a filesystem a segment over
NAME_MAX), and raise `KeyRefused` (a ValueError, and a permanent error: the transfer is ``failed``
with reason ``key_refused``, never retried until its deadline). `worker.intake.object_keys.object_key` builds keys
every backend can store; what is refused is an operator's template, or a key recorded before.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote, unquote

from worker.errors import KeyRefused

_FORBIDDEN_CHARS = {"\x00": "NUL", "\\": "backslash"}
_FORBIDDEN_SEGMENTS = {"": "an empty", ".": "a '.'", "..": "a '..'"}
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")  # printable ASCII, not "%"


def check_key(key: str) -> str:
    """Return `key` unchanged when it is a safe relative key; raise KeyRefused saying why not."""
    if not key:
        raise KeyRefused("storage key is empty")
    for char, name in _FORBIDDEN_CHARS.items():
        if char in key:
            raise KeyRefused(f"storage key {key!r} contains a {name} character")
    if key.startswith("/"):
        raise KeyRefused(f"storage key {key!r} is absolute; keys are relative to the storage's prefix")
    for segment in key.split("/"):
        if segment in _FORBIDDEN_SEGMENTS:
            raise KeyRefused(f"storage key {key!r} has {_FORBIDDEN_SEGMENTS[segment]} path segment")
    return key


def check_prefix(prefix: str) -> str:
    """Return a normalised prefix: ``""`` or ``"a/b/"``. Raises KeyRefused like `check_key`."""
    stripped = prefix.strip("/")
    if not stripped:
        return ""
    return check_key(stripped) + "/"


def encode_header_metadata(metadata: Mapping[str, str], names: re.Pattern[str], rule: str) -> dict[str, str]:
    """Metadata for a store that carries it in HTTP headers (S3, Azure): values percent-encoded
    (``%``, space, controls, non-ASCII). Raises ValueError for a name `names` does not match, saying `rule`."""
    for name in metadata:
        if not names.fullmatch(name):
            raise ValueError(f"{rule}: {name!r}")
    return {name: quote(value, safe=_HEADER_SAFE) for name, value in metadata.items()}


def decode_header_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """The values `encode_header_metadata` encoded, as they were."""
    return {name: unquote(value) for name, value in metadata.items()}
