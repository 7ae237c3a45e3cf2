"""The ledger's schema version (``archiver:schema_version``), checked by every process at start.

- missing: a ledger written before versioning (or a new, empty one) is version 1; that is written
  with SETNX, so processes starting together agree;
- equal to `SCHEMA_VERSION`: nothing to do;
- lower: the registered migrations run in order (``MIGRATIONS[n]`` takes version n to n + 1), under
  a lock so that one process migrates while the others wait; the version is written after each
  step, so an interrupted upgrade resumes at the step that did not finish (a migration must be
  safe to run again, and on an empty ledger);
- higher, or not a version at all: `LedgerSchemaError` — a newer archiver has written this ledger,
  and this one would misread it. The CLI stops with exit code 2.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping

import structlog

from worker.errors import LedgerSchemaError
from worker.ledger.index import index_existing
from worker.ledger.store import Ledger

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 2
UNVERSIONED = 1  # what a ledger from before versioning is
Migration = Callable[[Ledger], object]
MIGRATIONS: dict[int, Migration] = {  # from version n to n + 1
    1: index_existing,  # 2: the index of `archiver find` (worker.ledger.index), built for the files recorded so far
}
LOCK_MS = 10 * 60 * 1000
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def ledger_version(ledger: Ledger) -> str | None:
    """The version as stored (None when the ledger has none yet)."""
    value = ledger.redis.get(ledger.keys.schema_version)
    return None if value is None else str(value)


def ensure_schema(ledger: Ledger, *, supported: int = SCHEMA_VERSION,
                  migrations: Mapping[int, Migration] = MIGRATIONS, wait_s: float = 600.0) -> int:
    """Make the ledger's schema `supported` (see the module docstring) and return it.
    Raises LedgerSchemaError (newer or unknown version, a missing or failed migration) and redis errors."""
    stored = ledger_version(ledger)
    if stored is None:  # read first: a check that writes nothing works on any connection
        ledger.redis.setnx(ledger.keys.schema_version, UNVERSIONED)
        stored = ledger_version(ledger)
    version = _parse(stored, supported)
    if version == supported:
        return version
    missing = [v for v in range(version, supported) if v not in migrations]
    if missing:
        raise LedgerSchemaError(f"the ledger has schema version {version}, and no migration from version "
                                f"{missing[0]} is known to this archiver (it supports {supported})",
                                found=str(version), supported=supported)
    return _migrate(ledger, supported, migrations, wait_s)


def _parse(stored: str | None, supported: int) -> int:
    try:
        version = int(stored or "")
    except ValueError:
        version = 0
    if version < 1:
        raise LedgerSchemaError(f"the ledger's schema version is {stored!r}, not a version this archiver knows "
                                f"(it supports {supported})", found=stored, supported=supported)
    if version > supported:
        raise LedgerSchemaError(f"the ledger has schema version {version}, newer than this archiver supports "
                                f"({supported}): a newer archiver has written it; run that version (or newer)",
                                found=stored, supported=supported)
    return version


def _migrate(ledger: Ledger, supported: int, migrations: Mapping[int, Migration], wait_s: float) -> int:
    lock, token = ledger.keys.schema_migration_lock, uuid.uuid4().hex
    deadline = time.monotonic() + wait_s
    while not ledger.redis.set(lock, token, nx=True, px=LOCK_MS):
        if _parse(ledger_version(ledger), supported) == supported:
            return supported  # another process finished the migration
        if time.monotonic() > deadline:
            raise LedgerSchemaError(f"another process has been migrating the ledger for over {wait_s:.0f} s "
                                    f"(lock {lock})", found=ledger_version(ledger), supported=supported)
        time.sleep(0.5)
    try:
        version = _parse(ledger_version(ledger), supported)  # again: it may have moved while we waited
        while version < supported:
            _step(ledger, version, migrations[version], supported)
            version += 1
        return version
    finally:
        ledger.redis.eval(_UNLOCK, 1, lock, token)


def _step(ledger: Ledger, version: int, migration: Migration, supported: int) -> None:
    log.warning("ledger_migration_started", from_version=version, to_version=version + 1)
    try:
        migration(ledger)
    except Exception as exc:
        raise LedgerSchemaError(f"the migration of the ledger from schema version {version} to {version + 1} "
                                f"failed: {exc}; the ledger stays at version {version}",
                                found=str(version), supported=supported) from exc
    ledger.redis.set(ledger.keys.schema_version, version + 1)
    log.warning("ledger_migrated", from_version=version, to_version=version + 1)
