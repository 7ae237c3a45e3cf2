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
  P transfer:<tid>        HASH  one file → one storage: state, attempts, bytes, sha256, key…
  P transfers             ZSET  every transfer by creation time (ms)
  P state:<state>         ZSET  transfers in a state, by last update (ms)
  P due                   ZSET  when a transfer should next be dispatched (ms): the retry time of a
                                queued one, the lease end of a running one
  P expiry                ZSET  when Stream deletes the file (ms), for transfers not yet finished
  P unrouted              ZSET  files whose destinations are not known yet (call-level routing needs
                                the call's data): when to (re)try resolving them (ms)
  P call:<cid>            STRING a call's GetCall data, cached for call_cache_ttl
  P running:<storage>     ZSET  transfers of a storage holding a lease, by lease end (ms): how
                                `max_concurrency` is counted across every worker
  P keyowner:<storage>    HASH  object key → the file id it was given to at intake, so one key never
                                holds two files; kept after `prune` (the object is still there)
  P scheduler:lock        STRING the scheduler's lock (its holder's token)
  P failure:<kind>:<cid>:<egress or created_at>  STRING a failure event Stream reported was noted
                                (kept 15 days, so a redelivery is not noted again)
  P stream_failures       LIST  those failure events (JSON), newest first, the last 10,000
  P schema_version        STRING the ledger's schema version (`worker.ledger.schema`)
  P schema_migration_lock STRING held by the process migrating the schema

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
  P stream_api:<part>:<E>   HASH/ZSET  Stream's rate-limit budget of endpoint E (`worker.stream.limits`):
                                  part state, minute or second
  P trial_permit:<url>      STRING a download permission of ``archiver try`` (`worker.intake.permits`)
  P stats:<figure>, P storage_health  the cluster-wide figures (`worker.monitoring.stats`; see `FIGURES`)
  P stats:tally:<state>     STRING a state's kept count by storage (`worker.monitoring.tally`)
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "archiver:"

# What `worker.monitoring.stats.Stats` keeps, by the name it reads and writes them under (P + name).
FIGURES = frozenset({
    "stats:bytes", "stats:bytes_by_day", "stats:duration", "stats:retries", "stats:failures",
    "stats:webhooks", "stats:last_webhook", "stats:stream_requests", "stats:stream_wait_ms",
    "storage_health",
})
STREAM_API_PARTS = ("state", "minute", "second")


@dataclass(frozen=True)
class Keys:
    """The key names under one prefix (see the module docstring)."""

    prefix: str = DEFAULT_PREFIX

    # -- the transfers (Lua: worker.ledger.scripts, and the counting scripts of
    #    worker.monitoring.tally and worker.ledger.unrouted) -------------------------------------

    def file(self, file_id: str) -> str:
        return f"{self.prefix}file:{file_id}"

    def file_transfers(self, file_id: str) -> str:
        return f"{self.prefix}file:{file_id}:transfers"

    def transfer(self, transfer_id: str) -> str:
        return f"{self.prefix}transfer:{transfer_id}"

    @property
    def transfers(self) -> str:
        return f"{self.prefix}transfers"

    def state(self, state: str) -> str:
        return f"{self.prefix}state:{state}"

    @property
    def due(self) -> str:
        return f"{self.prefix}due"

    @property
    def expiry(self) -> str:
        return f"{self.prefix}expiry"

    @property
    def unrouted(self) -> str:
        return f"{self.prefix}unrouted"

    def call(self, call_cid: str) -> str:
        return f"{self.prefix}call:{call_cid}"

    def running(self, storage: str) -> str:
        return f"{self.prefix}running:{storage}"

    def key_owner(self, storage: str) -> str:
        return f"{self.prefix}keyowner:{storage}"

    @property
    def scheduler_lock(self) -> str:
        return f"{self.prefix}scheduler:lock"

    def failure(self, kind: str, call_cid: str, identity: object) -> str:
        return f"{self.prefix}failure:{kind}:{call_cid}:{identity}"

    @property
    def stream_failures(self) -> str:
        return f"{self.prefix}stream_failures"

    @property
    def schema_version(self) -> str:
        return f"{self.prefix}schema_version"

    @property
    def schema_migration_lock(self) -> str:
        return f"{self.prefix}schema_migration_lock"

    # -- around the transfers --------------------------------------------------------------------

    @property
    def at_risk(self) -> str:
        return f"{self.prefix}at_risk"

    @property
    def at_risk_at(self) -> str:
        return f"{self.prefix}at_risk_at"

    @property
    def reconcile_marks(self) -> str:
        return f"{self.prefix}reconcile:marks"

    @property
    def reconcile_failed(self) -> str:
        return f"{self.prefix}reconcile:failed"

    def backfill(self, name: str) -> str:
        return f"{self.prefix}backfill:{name}"

    def backfill_calls(self, name: str) -> str:
        return f"{self.prefix}backfill:{name}:calls"

    def backfill_queue(self, name: str) -> str:
        return f"{self.prefix}backfill:{name}:queue"

    def stream_api(self, endpoint: str) -> list[str]:
        """An endpoint's budget: its state, minute and second keys (the budget script's KEYS)."""
        return [f"{self.prefix}stream_api:{part}:{endpoint}" for part in STREAM_API_PARTS]

    def trial_permit(self, exact_url: str) -> str:
        return f"{self.prefix}trial_permit:{exact_url}"

    def figure(self, name: str) -> str:
        """A figure of `FIGURES` (ValueError for any other name)."""
        if name not in FIGURES:
            raise ValueError(f"no such figure: {name!r}")
        return f"{self.prefix}{name}"

    def tally(self, state: str) -> str:
        return f"{self.prefix}stats:tally:{state}"
