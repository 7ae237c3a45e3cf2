"""The index of `archiver find`: which files a call, a call type, a day or a custom value has.

Every file is indexed when intake records it, in the same script (`Ledger.record`; the Lua is
`worker.ledger.scripts.INDEX`): in its call's set (``call_files:<call id>``, which the status page's
call view reads too), its call type's, its day's, and each of its custom terms' sorted set, scored by
its start (``start_time``, ms). So results come newest first and a time range is one range read. A
file's day is the UTC date it started: a recording made late on the 3rd is found under the 3rd,
whenever it was archived.

**Custom data** is the call's (``custom`` in Stream's call object), known only where the archiver asks
Stream for the call: GetCall, for call-level routing (`worker.intake.resolve`), and QueryCalls, in a
backfill or reconciliation (`worker.discovery.run`, which also indexes the files it already knew). The
terms are ``key=value`` for each scalar value (`custom_terms`): strings as they are, numbers as JSON
writes them (``5``, ``2.5``), booleans as ``true`` / ``false``; lists, objects and nulls are not indexed,
nor is a key longer than `MAX_KEY` or a value longer than `MAX_VALUE` characters; at most `MAX_TERMS`
terms per call (by key, in order). A search matches a term exactly (case and all). When a call's
custom data changes, its files' terms are replaced the next time the archiver reads it.

Removing a file's entries (`remove_from_index`, and the prune script) needs only the file's hash:
it keeps its terms (field ``custom``). Files recorded before the index existed are indexed by the
schema migration to version 2 (`index_existing`); their custom terms when their call is next listed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import structlog

from worker.ledger import scripts as lua

if TYPE_CHECKING:  # the ledger calls terms_json when it records a file
    from worker.ledger.store import Ledger

log = structlog.get_logger(__name__)

MAX_KEY = 64  # characters of a custom key indexed
MAX_VALUE = 128  # characters of a custom value indexed (longer ones are not: an exact match on a cut value would lie)
MAX_TERMS = 20  # custom terms indexed per call
MIGRATION_BATCH = 1000  # keys SCANned (and files indexed) per round trip


def _text(value: object) -> str | None:
    """A scalar custom value as a search spells it; None for anything else."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return json.dumps(value)
    return value if isinstance(value, str) else None


def custom_terms(call: Mapping[str, Any] | None) -> list[str]:
    """The ``key=value`` terms a call's custom data is indexed by (see the module docstring), sorted."""
    custom = call.get("custom") if call is not None else None
    if not isinstance(custom, Mapping):
        return []
    terms = []
    for key in sorted(k for k in custom if isinstance(k, str)):
        text = _text(custom[key])
        if key and len(key) <= MAX_KEY and text is not None and len(text) <= MAX_VALUE:
            terms.append(f"{key}={text}")
    return terms[:MAX_TERMS]


def terms_json(terms: Sequence[str]) -> str:
    """The JSON the scripts take (and the file's hash keeps) for `terms`."""
    return json.dumps(sorted(terms), ensure_ascii=False)


def index_known(ledger: Ledger, file_ids: Sequence[str], call: Mapping[str, Any] | None) -> int:
    """Index files already recorded (idempotent), with `call`'s custom terms when it is given (None:
    leave their terms as they are); one round trip. Returns how many were recorded (a file not in the
    ledger is skipped, never indexed)."""
    if not file_ids:
        return 0
    script = ledger.redis.register_script(lua.INDEX_FILE)
    custom = "" if call is None else terms_json(custom_terms(call))
    pipe = ledger.redis.pipeline(transaction=False)
    for fid in file_ids:
        script(args=[ledger.prefix, fid, custom], client=pipe)
    return sum(int(done) for done in pipe.execute())


def remove_from_index(ledger: Ledger, file_id: str) -> bool:
    """Take the file out of every index entry (its record stays: the caller deletes it); False when
    it is not recorded. For whatever forgets a file (`prune` does it in its own script)."""
    return bool(ledger.redis.register_script(lua.UNINDEX_FILE)(args=[ledger.prefix, file_id]))


def index_existing(ledger: Ledger, batch: int = MIGRATION_BATCH) -> int:
    """The migration to schema 2: index every file recorded so far (by call, call type, day, and the
    custom terms its hash has), SCANning the ledger `batch` keys per round trip. The cursor is kept
    (``index:migration``) after each batch, so an interrupted run resumes there; indexing is
    idempotent, so a file seen twice costs nothing. Returns the files indexed by this run."""
    script = ledger.redis.register_script(lua.INDEX_FILE)
    start = ledger.keys.file("")
    cursor, done = int(cast(str | None, ledger.redis.get(ledger.keys.index_migration)) or 0), 0
    while True:
        cursor, found = ledger.redis.scan(cursor, match=_glob(start) + "*", count=batch)
        pipe = ledger.redis.pipeline(transaction=False)
        for key in cast(list[str], found):
            if not key.endswith(":transfers"):  # file:<fid>:transfers, its set of transfers
                script(args=[ledger.prefix, key.removeprefix(start), ""], client=pipe)
        if cursor:
            pipe.set(ledger.keys.index_migration, cursor)
        else:
            pipe.delete(ledger.keys.index_migration)
        done += sum(int(r) for r in pipe.execute()[:-1])
        if not cursor:
            log.info("ledger_index_built", files=done)
            return done


def _glob(text: str) -> str:
    """`text` matched literally in a SCAN pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
