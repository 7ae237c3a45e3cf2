"""A chained entry, and the one canonical form its hash is computed over (docs/audit-log.md).

An entry is a JSON object: the fields noted (``action``, ``at`` and the subject's), and the three the
chain gives it: ``seq`` (1, 2, 3…, no gap), ``prev`` (the hash of entry seq − 1; `GENESIS` for the
first) and ``hash``. The canonical form of an entry is its JSON with every field but ``hash``, keys
sorted, no whitespace, non-ASCII characters escaped (``\\uXXXX``), encoded as ASCII: Python's
``json.dumps(fields, sort_keys=True, separators=(",", ":"))``. ``hash`` is the SHA-256 of that form,
in lowercase hex. An exported line is the same JSON with ``hash`` included (so a line that is not in
this exact form was altered). Values are strings, integers, booleans and null: never fractions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from worker.ledger.audit_entries import SEALED_FIELDS

GENESIS = "0" * 64  # the `prev` of entry 1: no entry came before it
Entry = dict[str, Any]


def dumps(fields: Mapping[str, Any]) -> str:
    """The canonical JSON of `fields` (all of them: leave `hash` out first to hash an entry)."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The SHA-256 (hex) of the canonical form of every field of `entry` but ``hash``."""
    return hashlib.sha256(dumps({k: v for k, v in entry.items() if k != "hash"}).encode("ascii")).hexdigest()


def seal(raw: str, seq: int, prev: str, now: int) -> Entry:
    """The entry queued as `raw` (JSON), chained as number `seq` after the entry whose hash is `prev`.
    A queued entry that is not a JSON object with an ``action`` (or that names a field the chain
    sets) is never dropped: it is chained as ``{"action": "unreadable", "raw": raw, "at": now}``."""
    fields = _fields(raw)
    if fields is None:
        fields = {"action": "unreadable", "raw": raw, "at": now}
    entry = {**fields, "seq": seq, "prev": prev}
    entry["hash"] = entry_hash(entry)
    return entry


def _fields(raw: str) -> Entry | None:
    """The fields of a queued entry; None when it is not one (see `seal`). An integral number that
    JSON spelled as a fraction (cjson's 1e+14) is an integer, so the canonical form is the same
    whoever wrote it."""
    try:
        fields = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(fields, dict) or not isinstance(fields.get("action"), str) or SEALED_FIELDS & fields.keys():
        return None
    for name, value in fields.items():
        if isinstance(value, float):
            if not value.is_integer():
                return None
            fields[name] = int(value)
        elif isinstance(value, dict | list):
            return None
    return fields
