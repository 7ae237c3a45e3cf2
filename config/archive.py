"""The TOML file named by ARCHIVER_CONFIG: routing, timings, ``[transfer]`` and the storages.

Unknown keys are errors. Any secret may be written ``"env:NAME"`` or ``"file:/path"``; secrets are
`SecretStr` and never appear in a repr, a log line or an error.
"""

from __future__ import annotations

import difflib
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit

from pydantic import ByteSize, Field, ValidationError, field_validator, model_validator

from config.errors import ConfigError, describe
from config.notify import NotifyConfig
from config.storages import DEFAULT_LOCAL_ROOT, LOCAL_STORAGE_NAME, STREAM_S3, StorageConfig
from config.types import Duration, Kind, Route, Strict, names_in

MAX_LINK_TTL = timedelta(days=7)  # worker.storage.base.MAX_SIGNED_TTL: the longest a store's signature lasts


class TransferTuning(Strict):
    """``[transfer]``: how bytes move. Memory per transfer is about part_size × (parts_in_flight + 1), plus
    part_size × download_streams while a large download runs in parallel ranges."""

    part_size: ByteSize = Field(default=ByteSize(8 * 1024 * 1024),
                                description="The size of each part of a multipart upload; S3's minimum is 5MiB.")
    parts_in_flight: int = Field(default=4, ge=1, le=64, description="Parts of one file uploaded at once.")
    multipart_threshold: ByteSize = Field(default=ByteSize(16 * 1024 * 1024),
                                          description="Smaller files go up in a single request.")
    read_chunk: ByteSize = Field(default=ByteSize(1024 * 1024),
                                 description="The size of each read from a download or a storage.")
    connect_timeout: Duration = Field(default=timedelta(seconds=10),
                                      description="The longest wait for a connection (Stream's CDN, a storage).")
    read_timeout: Duration = Field(default=timedelta(seconds=60),
                                   description="The longest wait for the next bytes of an answer.")
    parallel_download_threshold: ByteSize = Field(
        default=ByteSize(64 * 1024 * 1024),
        description="A download at least this large is fetched as download_streams byte ranges at once (when the "
                    "source answers a range request with 206; otherwise over one connection).")
    parallel_download_max_rate: ByteSize = Field(
        default=ByteSize(128 * 1024 * 1024),
        description="Bytes a second: a large download whose first part_size bytes arrive at least this fast stays on "
                    "one connection (more would cost CPU and gain nothing); a slower one goes on in parallel ranges.")
    download_streams: int = Field(
        default=4, ge=1, le=32,
        description="Connections one large download uses at once, each fetching the next part_size range; 1 turns "
                    "parallel downloads off. The ranges wait in memory to be written in order: up to "
                    "download_streams × part_size more per transfer. Also how many idle connections per download "
                    "host a worker process keeps open for the next file.")
    resume_checkpoint: ByteSize = Field(
        default=ByteSize(64 * 1024 * 1024),
        description="How much more of an upload the store must hold durably before the ledger records it again "
                    "(its parts, session or blocks; on local disk, a fsync of the temporary file): an attempt "
                    "cut short by a crash, a deploy or a lost lease is resumed from the last record, re-reading "
                    "the bytes before it from the source for the SHA-256 without uploading them again. At least "
                    "part_size.")

    @model_validator(mode="after")
    def _s3_minimum(self) -> TransferTuning:
        if self.part_size < 5 * 1024 * 1024:
            raise ValueError("part_size must be at least 5MiB (S3's minimum part size)")
        if self.resume_checkpoint < self.part_size:
            raise ValueError("resume_checkpoint must be at least part_size")
        return self


_KEY_FIELDS = {
    "call_type": "t",
    "call_id": "i",
    "call_cid": "t:i",
    "filename": "f",
    "kind": "recording",
    "session_id": "s",
    "recording_type": "composite",
    "year": "2026",
    "month": "01",
    "day": "01",
}
_MANIFEST_FIELDS = {"call_type": "t", "call_id": "i", "call_cid": "t:i", "session_id": "s"}


def _checked_template(template: str, fields: dict[str, str], known: str, required: str, why: str) -> str:
    """`template` when it renders with `fields`, names `required`, and renders to a non-empty key;
    ValueError saying which rule it breaks (`known`: the placeholders, as the message lists them)."""
    try:
        rendered = template.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"unknown or malformed placeholder {exc} (known: {known})") from None
    if "{" + required + "}" not in template:
        raise ValueError(f"must contain {{{required}}}, or {why}")
    if not rendered.strip("/"):
        raise ValueError("renders to an empty key")
    return template


class ArchiveConfig(Strict):
    """The TOML file, top level."""

    kinds: tuple[Kind, ...] = Field(
        default=("recording", "transcription"),
        description='The kinds of file archived: "recording", "transcription", "frame_recording" (the still images '
                    "Stream captures of a call's tracks, announced by call.frame_recording_ready), \"stats_report\" "
                    "(a session's report, fetched from Stream's API on call.stats_report_ready and archived as "
                    "stats_report_<session_id>.json; reconciliation fetches those missing for the sessions of the "
                    "files it lists). Stream's events "
                    "for a kind not listed are answered and counted (outcome ignored), nothing recorded, and "
                    "backfill and reconciliation do not list it. Stream has no listing of frame recordings: one "
                    "whose event was missed cannot be recovered.")
    default_storage: Route = Field(
        default=LOCAL_STORAGE_NAME,
        description='Where a file goes when nothing more specific applies: a storage name, or a list of them (one '
                    'transfer per destination). "stream-s3" means "leave it with Stream" (recorded as skipped). '
                    'Unset: the storage itself when exactly one is declared; "local" when a storage of that name is '
                    "declared, or none is (then it is the ./archive directory); with several declared, it must be "
                    "set.")
    download_hosts: tuple[str, ...] = Field(
        default=("*.stream-io-cdn.com",),
        description='Hosts the worker may download from (shell-style patterns, host or host:port). Setting it '
                    'replaces the default list, so keep "*.stream-io-cdn.com" in it; ARCHIVER_DOWNLOAD_HOSTS adds '
                    "patterns to it without editing the file (for quick trials). A wildcard pattern or a bare host "
                    "allows only https on port 443; plain http or another port needs a pattern naming that host:port "
                    'exactly, without a wildcard (e.g. "cdn.internal:80", "127.0.0.1:8080"). Addresses inside a '
                    "private network (loopback, 10/8, 192.168/16, link-local, site-local fec0::/10, metadata "
                    "services…) are refused even when a pattern matches, unless a pattern names that host (or "
                    "host:port) exactly, without a wildcard. Downloads go straight to the host: HTTP(S)_PROXY "
                    "variables are not used.")
    key_template: str = Field(
        default="{call_type}/{call_id}/{filename}",
        description="Object key under the storage's path. Placeholders: call_type, call_id, call_cid, filename, kind "
                    "(recording | transcription | frame_recording), session_id, recording_type, year, month, day "
                    "(when it ended).")
    manifest_template: str = Field(
        default="{call_type}/{call_id}/manifest_{session_id}.json",
        description="Object key of a session's manifest (a JSON list of the session's archived files with their "
                    "sizes and SHA-256), written into every storage holding a file of the session and rewritten as "
                    "files arrive. Placeholders: call_type, call_id, call_cid, session_id. Files without a "
                    "session_id (older payloads) get no manifest.")
    settle_after: Duration = Field(
        default=timedelta(minutes=30),
        description="A session is complete (its final manifest written, session.archived announced) once every "
                    "file of it the ledger knows is archived at every destination and a reconciliation listed its "
                    "call at least this long after the session's end (the later of the call's ended_at and its "
                    "files' end_time) and found no file of it the ledger lacked. Keep it below reconcile_overlap, "
                    "or only the full reconciliation lists a call that late.")
    call_types: dict[str, Route] = Field(
        default_factory=dict, description="Per call type: the storage(s) its files go to.")
    call_storage_key: str = Field(
        default="archive_storage",
        description="Per call: this key in the call's `custom` data (read with GetCall) names its storage(s). "
                    '"" turns call-level routing off (then the receiver records transfers itself).')
    call_cache_ttl: Duration = Field(
        default=timedelta(minutes=10), description="How long a call's custom data is reused.")
    call_lookup_timeout: Duration = Field(
        default=timedelta(minutes=10),
        description="When GetCall keeps failing this long (or is refused), route by call type / default instead.")
    storages: tuple[StorageConfig, ...] = Field(
        default=(), description='The storages routes name; none: a local directory ./archive, named "local".')
    transfer: TransferTuning = Field(
        default=TransferTuning(), description="How bytes move: part sizes, parts at once, timeouts.")
    sweep_every: Duration = Field(
        default=timedelta(seconds=60), description="How often the scheduler queues the transfers that are due.")
    redispatch_after: Duration = Field(
        default=timedelta(minutes=5), description="A queued transfer no worker took is queued again after this.")
    transfer_lease: Duration = Field(
        default=timedelta(minutes=2), description="A worker's claim on a transfer; renewed while it runs.")
    retry_backoff: Duration = Field(
        default=timedelta(seconds=10), description="The first retry wait, doubled per attempt (with jitter).")
    retry_backoff_max: Duration = Field(default=timedelta(minutes=15), description="The longest retry wait.")
    retention: Duration = Field(
        default=timedelta(days=14), description="Stream deletes a file this long after it ended.")
    reconcile_every: Duration = Field(
        default=timedelta(minutes=15),
        description="How often the scheduler lists the calls changed since its last run (and records what "
                    "webhooks missed).")
    reconcile_overlap: Duration = Field(
        default=timedelta(hours=1),
        description="An incremental reconciliation looks back this much before the start of the last completed "
                    "one.")
    full_reconcile_every: Duration = Field(
        default=timedelta(hours=24), description="How often the scheduler lists every call of `retention`.")
    at_risk_margin: Duration = Field(
        default=timedelta(hours=48),
        description="Files this close to deletion and not yet archived are flagged (an error log line each, a count).")
    metrics_cache: Duration = Field(
        default=timedelta(seconds=10),
        description='How long each web process reuses the figures of its last /metrics answer ("0s": read Redis '
                    "on every scrape). A scrape reads the whole ledger's counts from Redis: this bounds its cost.")
    delete_from_stream: bool = Field(
        default=False, description="Delete a file from Stream once every destination has verified it.")
    audit_every: Duration = Field(
        default=timedelta(hours=24),
        description="How often the scheduler runs an audit (`archiver audit` over the last `retention`): what "
                    "Stream lists, what the ledger says and what each storage holds, compared file by file "
                    "(docs/audit.md). A run that stopped resumes at its checkpoint at the scheduler's next try.")
    audit_rate: float = Field(
        default=20, gt=0,
        description="The most storage objects an audit checks per second (a stat each; with --deep or audit_deep, "
                    "the whole object read back): the audit's load on the storages.")
    audit_deep: bool = Field(
        default=False,
        description="The scheduled audit reads every object back and compares its SHA-256 with the ledger's "
                    "(`archiver audit --deep`), instead of checking its presence and size: proof against silent "
                    "corruption, at the cost of reading every byte archived in the window once per audit_every.")
    audit_log_every: Duration = Field(
        default=timedelta(hours=1),
        description="How often the scheduler exports the audit log (every archive, deletion from Stream, prune, "
                    "retry, hold, release and erasure, each entry hashed with the one before it: docs/audit-log.md) "
                    "as a new JSONL object under audit-log/ in audit_log_storage, then trims the exported entries "
                    "from Redis. On its own period, also when shorter than sweep_every. Nothing new: nothing "
                    "written.")
    audit_log_storage: str | None = Field(
        default=None,
        description="The storage the audit log is exported into (a configured storage's name). Make it write-once "
                    "(Object Lock, a retention policy, immutability) for the log to be tamper-proof, not only "
                    "tamper-evident. Unset: the first storage of default_storage (the first storage declared when "
                    'that is "stream-s3").')
    notify: tuple[NotifyConfig, ...] = Field(
        default=(), description="Endpoints told of archived, failed, at-risk and lost files and of Stream's failure "
                                "events: signed POSTs, delivered at least once (docs/notifications.md).")
    notify_retry_for: Duration = Field(
        default=timedelta(hours=24),
        description="How long a notification is retried (backoff from retry_backoff up to retry_backoff_max) "
                    "before it is marked failed.")
    public_url: str | None = Field(
        default=None,
        description="The receiver's address as users reach it (e.g. \"https://archiver.example.com\", with a path when "
                    "a proxy serves it under one): download links to files on local disk point there, and `archiver "
                    "web` serves them at /files/<token>. Unset: `archiver link` and the status page give no link to a "
                    "local file (S3, GCS and Azure links point at the store itself).")
    max_link_ttl: Duration = Field(
        default=timedelta(hours=1),
        description="The longest a download link lasts: `archiver link --ttl` is capped to it (saying so), the status "
                    "page's download button gives the shorter of 15 minutes and this. At most 7 days, the longest "
                    "S3's and GCS's signatures last. A link lets whoever holds it download the file until it expires.")
    api_share: float = Field(
        default=0.5, gt=0, le=1,
        description="The most of each Stream API endpoint's rate limit the archiver spends, all its processes "
                    "together, in any minute (and of the per-second limit in any second): the app's own backend "
                    "spends the rest.")

    @field_validator("audit_log_every")
    @classmethod
    def _audit_log_every(cls, every: timedelta) -> timedelta:
        if every < timedelta(seconds=1):
            raise ValueError("must be at least 1s")
        return every

    @field_validator("default_storage", "call_types")
    @classmethod
    def _routes_not_empty(cls, value: Any) -> Any:
        routes = value.values() if isinstance(value, dict) else [value]
        for route in routes:
            names = names_in(route)
            if not names or any(not n for n in names) or len(set(names)) != len(names):
                raise ValueError("a route is a storage name or a non-empty list of distinct names")
        return value

    @field_validator("kinds", mode="before")
    @classmethod
    def _known_kinds(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple):
            return value  # the type's own error says a list is expected
        known: tuple[str, ...] = get_args(Kind)
        for name in value:
            if isinstance(name, str) and name not in known:
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
                hint = f": did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"unknown kind {name!r}{hint} (known: {', '.join(known)})")
        if not value:
            raise ValueError(f"must name at least one kind (known: {', '.join(known)})")
        return tuple(dict.fromkeys(value))

    @field_validator("key_template")
    @classmethod
    def _known_placeholders(cls, template: str) -> str:
        return _checked_template(template, _KEY_FIELDS, ", ".join(sorted(_KEY_FIELDS)), "filename",
                                 "files of one call would overwrite each other")

    @field_validator("manifest_template")
    @classmethod
    def _manifest_placeholders(cls, template: str) -> str:
        return _checked_template(template, _MANIFEST_FIELDS, ", ".join(_MANIFEST_FIELDS), "session_id",
                                 "the sessions of one call would share a manifest")

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL with a host, such as https://archiver.example.com, not {url!r}")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must be the receiver's address alone: no query string, fragment or user name")
        return url.strip().rstrip("/")

    @field_validator("max_link_ttl")
    @classmethod
    def _link_ttl(cls, ttl: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= ttl <= MAX_LINK_TTL:
            raise ValueError("must be between 1s and 7d (S3's and GCS's signed URLs last at most 7 days)")
        return ttl

    @field_validator("download_hosts")
    @classmethod
    def _hosts_given(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        if not hosts or any(not h.strip() for h in hosts):
            raise ValueError("must list at least one host pattern, none empty")
        return tuple(h.strip().lower() for h in hosts)

    @model_validator(mode="after")
    def _routes_exist(self) -> ArchiveConfig:
        names = [s.name for s in self.storages]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"storages: duplicate name(s) {', '.join(duplicates)}")
        known = set(names) | {STREAM_S3}
        if not self.storages:
            known.add(LOCAL_STORAGE_NAME)
        if "default_storage" not in self.model_fields_set and self.storages and LOCAL_STORAGE_NAME not in names:
            if len(names) > 1:
                raise ValueError(f"default_storage is not set, and {len(names)} storages are declared "
                                 f"({', '.join(names)}): set default_storage to the one (or the list) files go to "
                                 "when nothing else routes them")
            object.__setattr__(self, "default_storage", names[0])  # frozen: set once, while it is built
        routes = {"default_storage": self.default_storage} | {f"call_types.{t}": r for t, r in self.call_types.items()}
        for where, route in routes.items():
            for target in names_in(route):
                if target not in known:
                    raise ValueError(f"{where}: no storage named {target!r}")
            if STREAM_S3 in names_in(route) and len(names_in(route)) > 1:
                raise ValueError(f"{where}: {STREAM_S3!r} (leave it with Stream) cannot be combined with others")
        if self.audit_log_storage is not None and self.audit_log_storage not in known - {STREAM_S3}:
            raise ValueError(f"audit_log_storage: no storage named {self.audit_log_storage!r}"
                             f" (declared: {', '.join(s.name for s in self.effective_storages())})")
        return self

    def audit_log_storage_name(self) -> str:
        """Where the audit log is exported: `audit_log_storage`, else the first storage of
        `default_storage`, else (that is "stream-s3") the first storage declared."""
        if self.audit_log_storage is not None:
            return self.audit_log_storage
        first = self.default_names()[0]
        return self.effective_storages()[0].name if first == STREAM_S3 else first

    def default_names(self) -> list[str]:
        """The storages of `default_storage`."""
        return names_in(self.default_storage)

    def route_names(self, call_type: str) -> list[str]:
        """The storages a file of `call_type` goes to when the call itself names none."""
        return names_in(self.call_types.get(call_type, self.default_storage))

    def effective_storages(self) -> tuple[StorageConfig, ...]:
        """The declared storages; with none declared, a local directory ``./archive``."""
        if self.storages:
            return self.storages
        return (StorageConfig(name=LOCAL_STORAGE_NAME, storage_type="local", bucket=DEFAULT_LOCAL_ROOT),)

    def storage(self, name: str) -> StorageConfig:
        for storage in self.effective_storages():
            if storage.name == name:
                return storage
        raise KeyError(name)


def load_archive_config(path: Path | None) -> ArchiveConfig:
    """Read and validate the TOML file (or the defaults when there is none)."""
    if path is None:
        return ArchiveConfig()
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return ArchiveConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc, str(path), ArchiveConfig)) from None
