"""Every Redis key the archiver uses, built in one place.

The names are public: operators read them, and ledgers written by earlier versions hold them; they
never change. The Lua scripts (`worker.ledger.scripts`, and the few next to their readers) build the
same names from the prefix they are given: each such place is marked by a ``Lua:`` note below.

Keys (prefix P, default ``archiver:``).  The transfers::

  P file:<fid>            HASH  the file: call_cid, kind, filename, url and url_at (when that URL was
                                signed: its event's created_at, or the listing's time), session_id,
                                times…; while it waits for its routes: routing=pending,
                                routing_error, routing_attempts, routing_tried_at (the last
                                failed call lookup)
  P file:<fid>:transfers  SET   its transfer ids
  P transfer:<tid>        HASH  one file → one storage: state, attempts, bytes, sha256, key…;
                                commit_bytes and commit_sha256 (what its last attempt was about to
                                commit: a retry finding those bytes at its key is archived); replace=1
                                (its object was found changed: its next write may replace it);
                                replaced_key (its key before a retention period or a hold kept the
                                damaged object there and the copy went to a new key)
  P upload:<tid>          STRING what the store durably holds of the transfer's unfinished upload (the
                                JSON of `worker.storage.base.UploadState`), for its next attempt to
                                resume; written by its running attempt (fenced by the claim's token),
                                deleted when it ends in a final state or starts a fresh upload. Its
                                handle may be a capability (a GCS session URL): never shown
  P transfers             ZSET  every transfer by creation time (ms)
  P state:<state>         ZSET  transfers in a state, by last update (ms)
  P due                   ZSET  when a transfer should next be dispatched (ms): the retry time of a
                                queued one, the lease end of a running one
  P expiry                ZSET  when Stream deletes the file (ms), for transfers not yet finished
  P unrouted              ZSET  files whose destinations are not known yet (call-level routing needs
                                the call's data): when to (re)try resolving them (ms)
  P call:<cid>            STRING a call's GetCall data, cached for call_cache_ttl
  P call_files:<call id>  SET   the ids of the files of the calls with that id (of any type: a search by
                                id alone finds them), added at every intake, removed by `prune`; the
                                call index of `archiver find` too (`worker.ledger.index`)
  P running:<storage>     ZSET  transfers of a storage holding a lease, by lease end (ms): how
                                `max_concurrency` is counted across every worker
  P keyowner:<storage>    HASH  object key → the file id it was given to at intake, so one key never
                                holds two files; kept after `prune` (the object is still there)
  P session:<cid>:<sid>   SET   the ids of a session's files (recorded with a session_id)
  P sessions:<cid>        SET   the ids of the call's sessions (those of its files)
  P scheduler:lock        STRING the scheduler's lock (its holder's token)
  P failure:<kind>:<cid>:<egress or created_at>  STRING a failure event Stream reported was noted
                                (kept 15 days, so a redelivery is not noted again)
  P stream_failures       LIST  those failure events (JSON), newest first, the last 10,000
  P schema_version        STRING the ledger's schema version (`worker.ledger.schema`)
  P schema_migration_lock STRING held by the process migrating the schema

The index of `archiver find` (`worker.ledger.index`; written by intake's script, removed with the file's
record by `prune`). Each is scored by the file's start (its start_time, ms), so results come newest first
and time ranges are one range read::

  P index:type:<call type>        ZSET  the ids of the files of every call of that type
  P index:day:<YYYY-MM-DD>        ZSET  the ids of the files that started that day (UTC)
  P index:days                    ZSET  the days that have files (YYYY-MM-DD), by the day's start (ms)
  P index:custom:<key>=<value>    ZSET  the ids of the files of the calls whose custom data has that
                                        scalar value (strings, numbers, booleans as true/false; the
                                        file's hash keeps its terms in its field ``custom``)
  P index:migration               STRING the SCAN cursor of the migration indexing older files (schema 2)

A running transfer's hash also holds lease_owner, lease_until and lease_token (its claim's random
fencing token). Times are integer milliseconds since the epoch. Scripts build key names from the
prefix, so the ledger needs one Redis (or a Sentinel-managed primary), not a cluster.

Around the transfers (each module's docstring says what the values hold)::

  P at_risk, P at_risk_at   STRING files at risk at the last reconciliation, and when (ms)
  P reconcile:marks         HASH  reconciliation's watermark and completions (`worker.discovery.reconcile_state`)
  P reconcile:failed        HASH  calls whose listing failed, retried by the next run
  P backfill:<name>         STRING a discovery checkpoint (`worker.discovery.checkpoint`), with
  P backfill:<name>:calls   SET   its calls listed so far and
  P backfill:<name>:queue   SET   its transfers recorded so far
  P audit:run:<name>        STRING an audit's checkpoint (`worker.audit.checkpoint`): its query,
                                  position and counts, with
  P audit:run:<name>:calls  SET   the calls it listed so far,
  P audit:run:<name>:files  SET   the files it checked so far and
  P audit:run:<name>:rows   LIST  its verdicts so far (JSON, one per file and destination)
  P audit:last              STRING the last completed audit's summary (JSON: `worker.audit.last`)
  P stream_api:<part>:<E>   HASH/ZSET  Stream's rate-limit budget of endpoint E (`worker.stream.limits`):
                                  part state, minute or second
  P auditlog:pending        LIST  audit-log entries noted and not chained yet (JSON, oldest first;
                                  written by the scripts of the changes they record:
                                  `worker.ledger.audit_entries`, and by `worker.auditlog.note`)
  P auditlog:chain          LIST  entries chained (seq, prev, hash: `worker.auditlog.chain`) and not
                                  exported yet: their exported lines, oldest first
  P auditlog:head           HASH  the chain's head: seq and hash (of its last entry: the CAS every
                                  chaining checks), exported_seq, exported_hash, exported_key and
                                  exported_at (ms) of the last export; exporting (JSON: the export
                                  under way, redone the same after a crash)
  P auditlog:exports        ZSET  every export written (JSON: key, first, last, entries, bytes,
                                  sha256, at, storage), by its first seq: what `archiver audit-log
                                  verify` reads back
  P auditlog:export_lock    STRING held by the process exporting (redis-py's lock: its token)
  P trial_permit:<url>      STRING a download permission of ``archiver try`` (`worker.intake.permits`)
  P link_key                STRING the random key (hex) that signs links to local files, served by
                                  ``archiver web`` at /files/<token> (`worker.links.served`); set once
                                  (SET NX) by the first link made. Deleting it revokes every such link
  P stats:<figure>, P storage_health  the cluster-wide figures (`worker.monitoring.stats`; see `FIGURES`)
  P stats:tally:<state>     STRING a state's kept count by storage (`worker.monitoring.tally`)

Holds and erasure (`worker.compliance`)::

  P hold:<cid>                HASH  a legal hold on the call: reason, at (ms), by; while it exists nothing
                                    of the call is pruned, deleted from Stream or erased
  P holds                     ZSET  the calls on hold, by when the hold was placed (ms)
  P erased:<fid>              STRING a file erased by `archiver erase` (JSON: call_cid, session_id, at, by): intake
                                    refuses to record it again (a reconciliation or a late webhook still
                                    finding it at Stream); expires once Stream cannot hold it any more

A session's manifest (`worker.sessions.manifest`)::

  P manifest:<cid>:<sid>      HASH  the manifest last written: key, sha256, bytes, storages (comma-separated),
                                    written_at (ms); generation (bumped by every archived file of the
                                    session) and written_generation (the one the written manifest saw)
                                    The session's settling (`worker.sessions.complete`): call_ended_at,
                                    clean_listing_at (ms: the last listing of the call showing no file of
                                    the session the ledger lacked), completed_at (ms: session.archived
                                    announced, once)
  P manifest:<cid>:<sid>:lock STRING held by the process writing it (its random token)
  P sessions:settled          ZSET  "<cid>:<sid>" of sessions settled (listed settle_after past their end)
                                    and not complete yet, by when they settled (ms)

The notifications' outbox (`worker.notify.outbox`; written by the scripts whose change they announce;
delivered ones forgotten after `retention` by the scheduler)::

  P notify:event:<eid>        HASH  one event: id, type, subject (the transfer id, or the failure's
                                    marker), created_at, data (JSON: the transfer's hash, or the failure)
  P notify:delivery:<did>     HASH  one event to one endpoint (<did> = <eid>:<endpoint id>): state
                                    (pending | delivering | delivered | failed), attempts, give_up_at,
                                    last_status, last_error, and while delivering, its lease
  P notify:attempts:<did>     LIST  each attempt (JSON: at, status or error), oldest first
  P notify:due                ZSET  deliveries by when to try next (ms; a delivering one: its lease end)
  P notify:state:<state>      ZSET  deliveries in a state, by last update (ms)
  P notify:outcomes           HASH  attempts by outcome (delivered, retried, failed): for /metrics
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_PREFIX = "archiver:"

# What `worker.monitoring.stats.Stats` keeps, by the name it reads and writes them under (P + name).
FIGURES = frozenset({
    "stats:bytes", "stats:bytes_by_day", "stats:duration", "stats:retries", "stats:failures",
    "stats:webhooks", "stats:last_webhook", "stats:stream_requests", "stats:stream_wait_ms", "stats:files_received",
    "storage_health",
})
STREAM_API_PARTS = ("state", "minute", "second")


class _Fixed:
    """A key with no variable part: ``keys.due`` → ``P due``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, keys: Keys, owner: type | None = None) -> str:
        return keys.prefix + self.name


class _Named:
    """A key named by one value: ``keys.file(fid)`` → ``P file:<fid>``."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern

    def __get__(self, keys: Keys, owner: type | None = None) -> Callable[[str], str]:
        return lambda value: keys.prefix + self.pattern.format(value)


@dataclass(frozen=True)
class Keys:
    """The key names under one prefix (see the module docstring)."""

    prefix: str = DEFAULT_PREFIX

    # -- the transfers (Lua: worker.ledger.scripts, and the counting scripts of
    #    worker.monitoring.tally and worker.ledger.unrouted) -------------------------------------
    file = _Named("file:{}")
    file_transfers = _Named("file:{}:transfers")
    transfer = _Named("transfer:{}")
    upload = _Named("upload:{}")
    transfers = _Fixed("transfers")
    state = _Named("state:{}")
    due = _Fixed("due")
    expiry = _Fixed("expiry")
    unrouted = _Fixed("unrouted")
    call = _Named("call:{}")
    call_files = _Named("call_files:{}")
    index_type = _Named("index:type:{}")
    index_day = _Named("index:day:{}")  # YYYY-MM-DD
    index_days = _Fixed("index:days")
    index_custom = _Named("index:custom:{}")  # <key>=<value>
    index_migration = _Fixed("index:migration")
    running = _Named("running:{}")
    key_owner = _Named("keyowner:{}")
    session_files = _Named("session:{}")  # <cid>:<sid>
    call_sessions = _Named("sessions:{}")  # <cid>
    scheduler_lock = _Fixed("scheduler:lock")
    stream_failures = _Fixed("stream_failures")
    schema_version = _Fixed("schema_version")
    schema_migration_lock = _Fixed("schema_migration_lock")

    def failure(self, kind: str, call_cid: str, identity: object) -> str:
        return f"{self.prefix}failure:{kind}:{call_cid}:{identity}"

    # -- the notifications' outbox (Lua: worker.ledger.announce, worker.notify.outbox) ---
    notify_event = _Named("notify:event:{}")
    notify_delivery = _Named("notify:delivery:{}")
    notify_attempts = _Named("notify:attempts:{}")
    notify_due = _Fixed("notify:due")
    notify_state = _Named("notify:state:{}")
    notify_outcomes = _Fixed("notify:outcomes")

    # -- holds and erasure (Lua: worker.ledger.scripts PRUNE and INTAKE read hold: and erased:) -----
    hold = _Named("hold:{}")  # <cid>
    holds = _Fixed("holds")
    erased = _Named("erased:{}")  # <fid>

    # -- a session's manifest (Lua: worker.sessions.manifest) -----------------------------------
    manifest = _Named("manifest:{}")  # <cid>:<sid>
    manifest_lock = _Named("manifest:{}:lock")
    sessions_settled = _Fixed("sessions:settled")

    # -- around the transfers --------------------------------------------------------------------
    at_risk = _Fixed("at_risk")
    at_risk_at = _Fixed("at_risk_at")
    reconcile_marks = _Fixed("reconcile:marks")
    reconcile_failed = _Fixed("reconcile:failed")
    backfill = _Named("backfill:{}")
    backfill_calls = _Named("backfill:{}:calls")
    backfill_queue = _Named("backfill:{}:queue")
    audit_run = _Named("audit:run:{}")
    audit_calls = _Named("audit:run:{}:calls")
    audit_files = _Named("audit:run:{}:files")
    audit_rows = _Named("audit:run:{}:rows")
    audit_last = _Fixed("audit:last")
    trial_permit = _Named("trial_permit:{}")
    # the audit log (Lua: worker.ledger.audit_entries, worker.auditlog.chain and .export)
    auditlog_pending = _Fixed("auditlog:pending")
    auditlog_chain = _Fixed("auditlog:chain")
    auditlog_head = _Fixed("auditlog:head")
    auditlog_exports = _Fixed("auditlog:exports")
    auditlog_export_lock = _Fixed("auditlog:export_lock")
    link_key = _Fixed("link_key")
    tally = _Named("stats:tally:{}")

    def stream_api(self, endpoint: str) -> list[str]:
        """An endpoint's budget: its state, minute and second keys (the budget script's KEYS)."""
        return [f"{self.prefix}stream_api:{part}:{endpoint}" for part in STREAM_API_PARTS]

    def figure(self, name: str) -> str:
        """A figure of `FIGURES` (ValueError for any other name)."""
        if name not in FIGURES:
            raise ValueError(f"no such figure: {name!r}")
        return f"{self.prefix}{name}"
