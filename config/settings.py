"""Typed, frozen settings: environment variables plus the TOML file named by ARCHIVER_CONFIG.

The TOML file declares storages in Stream's own external-storage schema (``name``,
``storage_type``, ``bucket``, ``path``, provider keys inside ``[storages.aws_s3]``), so a Stream
user can copy theirs. Unknown keys are errors. Any secret may be written ``"env:NAME"`` or
``"file:/path"``; secrets are `SecretStr` and never appear in a repr, a log line or an error.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from datetime import date, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, overload
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_STORAGE_NAME = "local"
DEFAULT_LOCAL_ROOT = "./archive"
STREAM_S3 = "stream-s3"  # Stream's built-in storage: "leave it with Stream"


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the source, the field and the fault."""


def _resolve_secret(value: Any) -> Any:
    """Turn ``env:NAME`` / ``file:/path`` into the secret they point at."""
    if not isinstance(value, str):
        return value
    if value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set")
        return os.environ[name]
    if value.startswith("file:"):
        path = Path(value[5:])
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
    return value


Secret = Annotated[SecretStr, BeforeValidator(_resolve_secret)]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    """``"90s"``, ``"15m"``, ``"48h"``, ``"14d"``, ``"250ms"`` or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    raise ValueError(f"expected a duration such as '90s', '15m', '48h' or '14d', got {value!r}")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class S3Options(_Strict):
    """``[storages.aws_s3]``: Stream's S3Request, plus what AWS and S3-compatible stores need."""

    s3_region: str
    s3_api_key: Secret | None = None  # without it: the default AWS credential chain
    s3_secret: Secret | None = None
    s3_custom_endpoint_url: str | None = None  # any S3-compatible store (path-style addressing)
    s3_role_arn: str | None = None  # assume this role (STS) with the credentials above or the chain
    s3_external_id: str | None = None  # the role's ExternalId condition, if it has one
    s3_sse: Literal["AES256", "aws:kms"] | None = None  # server-side encryption
    s3_sse_kms_key_id: str | None = None  # with s3_sse = "aws:kms": the key (default: the AWS-managed key)
    s3_storage_class: str | None = None  # e.g. STANDARD_IA, GLACIER_IR, DEEP_ARCHIVE
    s3_tags: dict[str, str] = Field(default_factory=dict)  # object tags
    # when_supported: boto3's default CRC checksums (AWS, moto); when_required: only where S3 requires
    # one, plus a Content-MD5 that S3-compatible stores (MinIO, R2, B2, Wasabi, Ceph) accept.
    s3_request_checksum: Literal["when_supported", "when_required"] = "when_supported"

    @model_validator(mode="after")
    def _consistent(self) -> S3Options:
        if (self.s3_api_key is None) != (self.s3_secret is None):
            raise ValueError("s3_api_key and s3_secret must be given together")
        if self.s3_sse_kms_key_id and self.s3_sse != "aws:kms":
            raise ValueError("s3_sse_kms_key_id needs s3_sse = \"aws:kms\"")
        if self.s3_external_id and not self.s3_role_arn:
            raise ValueError("s3_external_id needs s3_role_arn")
        return self


class AzureOptions(_Strict):
    """``[storages.azure_blob]``: Stream's AzureRequest (a service principal), and other ways in.

    One way to authenticate is used, in this order: ``abs_connection_string``; ``abs_sas_token``;
    ``abs_account_key``; a service principal (``abs_client_id`` + ``abs_client_secret`` +
    ``abs_tenant_id``); else managed identity / the environment (azure-identity's default chain).
    """

    abs_account_name: str | None = None
    abs_client_id: str | None = None
    abs_client_secret: Secret | None = None
    abs_tenant_id: str | None = None
    abs_connection_string: Secret | None = None
    abs_account_key: Secret | None = None
    abs_sas_token: Secret | None = None
    abs_endpoint_url: str | None = None  # emulators and sovereign clouds; default https://<account>.blob.core.windows.net
    abs_authority_host: str | None = None  # Entra ID authority for the service principal (sovereign clouds)
    abs_server_side_copy: bool = True  # let Azure fetch the source itself (Put Block From URL) when it can

    @model_validator(mode="after")
    def _consistent(self) -> AzureOptions:
        principal = (self.abs_client_id, self.abs_client_secret, self.abs_tenant_id)
        if any(principal) and not all(principal):
            raise ValueError("abs_client_id, abs_client_secret and abs_tenant_id must be given together")
        if not self.abs_connection_string and not self.abs_account_name and not self.abs_endpoint_url:
            raise ValueError("needs abs_account_name (or abs_connection_string, or abs_endpoint_url)")
        return self


BUILT_IN_TYPES = ("s3", "gcs", "abs", "local")


class StorageConfig(_Strict):
    """One ``[[storages]]`` entry: Stream's external-storage fields, plus ``local`` and plug-ins."""

    name: str = Field(min_length=1)
    storage_type: str = Field(pattern=r"^[a-z][a-z0-9_]*$")  # s3 | gcs | abs | local | a plug-in's name
    bucket: str = Field(min_length=1)  # bucket or container; for local: the root directory
    path: str = ""  # prefix inside the bucket
    aws_s3: S3Options | None = None
    azure_blob: AzureOptions | None = None
    # Google Cloud Storage keys sit in the storage's own table, as in Stream's schema:
    gcs_credentials: Secret | None = None  # the service-account JSON itself, as Stream takes it
    gcs_credentials_file: Path | None = None  # or a path to it; neither: the environment's default credentials
    gcs_endpoint_url: str | None = None  # an emulator or compatible service (STORAGE_EMULATOR_HOST works too)
    gcs_project: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)  # a plug-in backend's own settings
    # At most this many transfers into this storage at once, across every worker on every machine
    # (counted in the ledger); absent: no limit beyond the workers' own concurrency.
    max_concurrency: Annotated[int, Field(strict=True, ge=1)] | None = None

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name == STREAM_S3:
            raise ValueError(f"{STREAM_S3!r} is Stream's own storage and cannot be redefined")
        return name

    @field_validator("path")
    @classmethod
    def _relative_prefix(cls, path: str) -> str:
        parts = [p for p in path.replace("\\", "/").split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise ValueError("must not contain '.' or '..' segments")
        return "/".join(parts) + ("/" if parts else "")

    @model_validator(mode="after")
    def _provider_keys(self) -> StorageConfig:
        kind = self.storage_type
        if kind == "s3" and self.aws_s3 is None:
            raise ValueError("storage_type 's3' needs a [storages.aws_s3] table with s3_region")
        if kind == "abs" and self.azure_blob is None:
            raise ValueError("storage_type 'abs' needs a [storages.azure_blob] table")
        foreign = {
            "aws_s3": kind != "s3" and self.aws_s3 is not None,
            "azure_blob": kind != "abs" and self.azure_blob is not None,
            "gcs_*": kind != "gcs" and any((self.gcs_credentials, self.gcs_credentials_file,
                                            self.gcs_endpoint_url, self.gcs_project)),
            "options": kind in BUILT_IN_TYPES and bool(self.options),
        }
        for key, misplaced in foreign.items():
            if misplaced:
                raise ValueError(f"{key} does not belong to a storage of storage_type {kind!r}")
        if self.gcs_credentials and self.gcs_credentials_file:
            raise ValueError("give gcs_credentials or gcs_credentials_file, not both")
        return self


class TransferTuning(_Strict):
    """``[transfer]``: how bytes move. Memory per transfer is about part_size × (parts_in_flight + 1)."""

    part_size: ByteSize = ByteSize(8 * 1024 * 1024)
    parts_in_flight: int = Field(default=4, ge=1, le=64)
    multipart_threshold: ByteSize = ByteSize(16 * 1024 * 1024)
    read_chunk: ByteSize = ByteSize(1024 * 1024)
    connect_timeout: Duration = timedelta(seconds=10)
    read_timeout: Duration = timedelta(seconds=60)

    @model_validator(mode="after")
    def _s3_minimum(self) -> TransferTuning:
        if self.part_size < 5 * 1024 * 1024:
            raise ValueError("part_size must be at least 5MiB (S3's minimum part size)")
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


Route = str | list[str]  # one storage name, or several (one transfer per destination)


def _names(route: Route) -> list[str]:
    return [route] if isinstance(route, str) else list(route)


class ArchiveConfig(_Strict):
    """The TOML file, top level."""

    # Where a file goes when nothing more specific applies: a storage name, or a list of them (one
    # transfer per destination). "stream-s3" means "leave it with Stream" (recorded as skipped). Unset:
    # the storage itself when exactly one is declared; "local" when a storage of that name is declared,
    # or none is (then it is the ./archive directory); with several declared, it must be set.
    default_storage: Route = LOCAL_STORAGE_NAME
    # Hosts the worker may download from (shell-style patterns, host or host:port). Setting it replaces
    # the default list, so keep "*.stream-io-cdn.com" in it; ARCHIVER_DOWNLOAD_HOSTS adds patterns to
    # it without editing the file (for quick trials). A wildcard pattern or a bare host allows only
    # https on port 443; plain http or another port needs a pattern naming that host:port exactly,
    # without a wildcard (e.g. "cdn.internal:80", "127.0.0.1:8080"). Addresses inside a private
    # network (loopback, 10/8, 192.168/16, link-local, site-local fec0::/10, metadata services…) are
    # refused even when a pattern matches, unless a pattern names that host (or host:port) exactly,
    # without a wildcard. Downloads go straight to the host: HTTP(S)_PROXY variables are not used.
    download_hosts: tuple[str, ...] = ("*.stream-io-cdn.com",)
    key_template: str = "{call_type}/{call_id}/{filename}"
    call_types: dict[str, Route] = Field(default_factory=dict)
    # Per call: this key in the call's `custom` data (read with GetCall) names its storage(s).
    # "" turns call-level routing off (then the receiver records transfers itself).
    call_storage_key: str = "archive_storage"
    call_cache_ttl: Duration = timedelta(minutes=10)  # how long a call's custom data is reused
    # When GetCall keeps failing this long (or is refused), route by call type / default instead.
    call_lookup_timeout: Duration = timedelta(minutes=10)
    storages: tuple[StorageConfig, ...] = ()
    transfer: TransferTuning = TransferTuning()
    sweep_every: Duration = timedelta(seconds=60)  # scheduler: how often due transfers are queued
    redispatch_after: Duration = timedelta(minutes=5)  # a queued transfer no worker took is re-queued
    transfer_lease: Duration = timedelta(minutes=2)  # a worker's claim; renewed while it runs
    retry_backoff: Duration = timedelta(seconds=10)  # first retry wait, doubled per attempt
    retry_backoff_max: Duration = timedelta(minutes=15)
    retention: Duration = timedelta(days=14)  # Stream deletes a file this long after it ended
    reconcile_every: Duration = timedelta(minutes=15)  # the scheduler lists the calls changed since its last run
    # An incremental reconciliation looks back this much before the start of the last completed one.
    reconcile_overlap: Duration = timedelta(hours=1)
    full_reconcile_every: Duration = timedelta(hours=24)  # the scheduler lists every call of `retention`
    at_risk_margin: Duration = timedelta(hours=48)  # flag files this close to deletion and not archived
    # How long each web process reuses the figures of its last /metrics answer ("0s": read Redis on
    # every scrape). A scrape reads the whole ledger's counts from Redis: this bounds its cost.
    metrics_cache: Duration = timedelta(seconds=10)
    delete_from_stream: bool = False  # delete a file from Stream once every destination verified it
    # The most of each Stream API endpoint's rate limit the archiver spends, all its processes together,
    # in any minute (and of the per-second limit in any second): the app's own backend spends the rest.
    api_share: float = Field(default=0.5, gt=0, le=1)

    @field_validator("default_storage", "call_types")
    @classmethod
    def _routes_not_empty(cls, value: Any) -> Any:
        routes = value.values() if isinstance(value, dict) else [value]
        for route in routes:
            names = _names(route)
            if not names or any(not n for n in names) or len(set(names)) != len(names):
                raise ValueError("a route is a storage name or a non-empty list of distinct names")
        return value

    @field_validator("key_template")
    @classmethod
    def _known_placeholders(cls, template: str) -> str:
        try:
            rendered = template.format(**_KEY_FIELDS)
        except (KeyError, IndexError, ValueError) as exc:
            known = ", ".join(sorted(_KEY_FIELDS))
            raise ValueError(f"unknown or malformed placeholder {exc} (known: {known})") from None
        if "{filename}" not in template:
            raise ValueError("must contain {filename}, or files of one call would overwrite each other")
        if not rendered.strip("/"):
            raise ValueError("renders to an empty key")
        return template

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
            for target in _names(route):
                if target not in known:
                    raise ValueError(f"{where}: no storage named {target!r}")
            if STREAM_S3 in _names(route) and len(_names(route)) > 1:
                raise ValueError(f"{where}: {STREAM_S3!r} (leave it with Stream) cannot be combined with others")
        return self

    def default_names(self) -> list[str]:
        """The storages of `default_storage`."""
        return _names(self.default_storage)

    def route_names(self, call_type: str) -> list[str]:
        """The storages a file of `call_type` goes to when the call itself names none."""
        return _names(self.call_types.get(call_type, self.default_storage))

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


def _host_list(value: Any) -> Any:
    """ARCHIVER_DOWNLOAD_HOSTS: host patterns separated by commas (spaces around them dropped)."""
    if isinstance(value, str):
        return tuple(item.strip().lower() for item in value.split(",") if item.strip())
    return value


class LedgerEnvironment(BaseSettings):
    """Environment variables. `archiver transfers list|show|export|prune` and `archiver storage
    list|check` need only these (Redis and the configuration); every command that talks to Stream or
    receives its webhooks also needs STREAM_API_KEY and STREAM_API_SECRET."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, case_sensitive=False)

    stream_base_url: str = "https://video.stream-io-api.com"
    redis_url: str = "redis://127.0.0.1:6379/0"
    archiver_broker_url: str | None = None  # the Celery broker, when not REDIS_URL
    # With sentinel:// URLs (sentinel://h1:26379;sentinel://h2:26379): the master the Sentinels
    # watch, and the Sentinels' own password if they have one (the URL's password is the master's).
    redis_sentinel_master: str | None = None
    redis_sentinel_password: SecretStr | None = None
    archiver_config: Path | None = None
    # Host patterns separated by commas (e.g. "127.0.0.1:8080,files.example.com"), allowed for
    # downloads in addition to the TOML file's download_hosts (never instead of them): for quick
    # trials without editing the file. A private address needs its exact host or host:port; plain
    # http or a port other than 443 needs its exact host:port.
    archiver_download_hosts: Annotated[tuple[str, ...], BeforeValidator(_host_list)] = ()
    archiver_log_format: Literal["auto", "json", "console"] = "auto"
    archiver_log_level: str = "INFO"
    archiver_status_token: SecretStr | None = None  # the status page (GET /): off (404) without it
    # When set, GET /metrics needs `Authorization: Bearer <this token>` (401 otherwise); unset, it is open.
    archiver_metrics_token: SecretStr | None = None

    @model_validator(mode="after")
    def _sentinel_master_named(self) -> LedgerEnvironment:
        urls = [u for u in (self.redis_url, self.archiver_broker_url) if u]
        if any(u.strip().lower().startswith("sentinel://") for u in urls) and not self.redis_sentinel_master:
            raise ValueError("REDIS_SENTINEL_MASTER must name the master the Sentinels watch "
                             "(REDIS_URL or ARCHIVER_BROKER_URL is a sentinel:// URL)")
        return self


# PyJWT's advice for HS256 (RFC 7518 §3.2): a key of at least 256 bits.
SHORT_SECRET_BYTES = 32


class Environment(LedgerEnvironment):
    """Environment variables, with Stream's credentials (required by every command that talks to Stream)."""

    stream_api_key: str = Field(min_length=1)
    # STREAM_API_SECRET: one secret, or several separated by commas while rotating ("new,old"). This
    # field is the first of them, the one that signs API calls; `stream_api_secrets` lists them all
    # (any of them authenticates a webhook).
    stream_api_secret: SecretStr

    _api_secrets: tuple[SecretStr, ...] = PrivateAttr(default=())

    @field_validator("stream_api_secret")
    @classmethod
    def _secret_given(cls, secret: SecretStr) -> SecretStr:
        if not secret.get_secret_value().strip():
            raise ValueError("must not be empty")
        items = split_secrets(secret.get_secret_value())
        empty = [str(n) for n, item in enumerate(items, 1) if not item]
        if empty:
            which = f"secret {empty[0]} is" if len(empty) == 1 else f"secrets {', '.join(empty)} are"
            raise ValueError(f"{which} empty (of {len(items)} separated by commas): give one secret, or several "
                             "separated by single commas, the one that signs API calls first")
        return secret

    def model_post_init(self, context: Any, /) -> None:
        secrets = tuple(SecretStr(s) for s in split_secrets(self.stream_api_secret.get_secret_value()))
        self._api_secrets = secrets
        # The field holds the signing secret alone, so code that signs with it keeps working.
        object.__setattr__(self, "stream_api_secret", secrets[0])  # frozen: set once, while it is built

    @property
    def stream_api_secrets(self) -> list[str]:
        """Every secret of STREAM_API_SECRET, in order: the first signs API calls, any of them
        authenticates a webhook (so a secret can be rotated without refusing a delivery)."""
        return [s.get_secret_value() for s in self._api_secrets or (self.stream_api_secret,)]

    def signing_secret_advice(self) -> str | None:
        """Advice when the signing secret is shorter than HS256 wants (PyJWT would warn on every
        token); None when it is long enough. Stream issues the secret: it still works as it is."""
        size = len(self.stream_api_secret.get_secret_value().encode())
        if size >= SHORT_SECRET_BYTES:
            return None
        return (f"STREAM_API_SECRET is {size} bytes, shorter than the {SHORT_SECRET_BYTES} HS256 recommends; "
                "Stream accepts it, so nothing needs changing unless you can issue a longer secret in "
                "Stream's dashboard")


class LedgerSettings(BaseModel):
    """What a command that only reads the ledger and the configuration needs: no Stream credentials.
    Code that signs (a Stream client, the webhook check) takes `Settings`, which has them."""

    model_config = ConfigDict(frozen=True)

    env: LedgerEnvironment
    archive: ArchiveConfig
    config_path: Path | None = None

    @property
    def broker_url(self) -> str:
        return self.env.archiver_broker_url or self.env.redis_url

    def secrets(self) -> list[str]:
        """Every secret value configured, so log output can be scrubbed of them."""
        found = []
        for token in (self.env.archiver_status_token, self.env.archiver_metrics_token):
            if token is not None:
                found.append(token.get_secret_value())
        for storage in self.archive.effective_storages():
            found += [s.get_secret_value() for s in storage_secrets(storage)]
        for url in (self.env.redis_url, self.env.archiver_broker_url):
            for part in (url or "").split(";"):  # sentinel:// URLs may list several
                password = urlsplit(part.strip()).password
                if password:
                    found.append(password)
        if self.env.redis_sentinel_password:
            found.append(self.env.redis_sentinel_password.get_secret_value())
        return [s for s in found if s]


class Settings(LedgerSettings):
    """Everything the service is configured with, read once, Stream's credentials included."""

    env: Environment

    def secrets(self) -> list[str]:
        return [*self.env.stream_api_secrets, *super().secrets()]


def split_secrets(value: str) -> list[str]:
    """STREAM_API_SECRET's secrets: separated by commas, spaces around them dropped."""
    return [item.strip() for item in value.split(",")]


def storage_secrets(storage: StorageConfig) -> list[SecretStr]:
    """Every secret a storage entry holds (for scrubbing logs and error messages)."""
    values: list[SecretStr | None] = [storage.gcs_credentials]
    if storage.aws_s3 is not None:
        values += [storage.aws_s3.s3_api_key, storage.aws_s3.s3_secret]
    if storage.azure_blob is not None:
        az = storage.azure_blob
        values += [az.abs_client_secret, az.abs_connection_string, az.abs_account_key, az.abs_sas_token]
    return [v for v in values if v is not None]


# How a value of each TOML type is named in an error ("got a string").
_TOML_TYPE_NAMES: tuple[tuple[Any, str], ...] = (
    (str, "a string"), (list | tuple, "a list"),
    (dict, "a table"), (date | time, "a date or time"),
)
# What a field of each pydantic error type expects, in a reader's words.
_EXPECTED = {
    "string_type": "a string (text in quotes)", "bool_type": "true or false", "bool_parsing": "true or false",
    "int_type": "a whole number", "int_parsing": "a whole number", "int_from_float": "a whole number",
    "float_type": "a number", "float_parsing": "a number", "list_type": 'a list such as ["a", "b"]',
    "tuple_type": 'a list such as ["a", "b"]', "set_type": 'a list such as ["a", "b"]', "dict_type": "a table",
    "model_type": "a table", "model_attributes_type": "a table", "path_type": "a path (a string)",
    "byte_size": 'a size such as "8MiB", "16MB" or a number of bytes', "byte_size_unit": 'a size such as "8MiB"',
}
# Fields whose expected value is better shown by example (by the field's name, wherever it is).
_EXAMPLES = {
    "download_hosts": 'a list of host patterns such as ["*.example.com"]',
    "default_storage": 'a storage name, or a list of names such as ["s3", "local"]',
    "call_types": 'a table of call type = storage name(s), such as { livestream = "s3" }',
    "storages": "[[storages]] tables (each with name, storage_type and bucket)",
    "call_types.*": 'a storage name, or a list of names such as ["s3", "local"]',
}
_UNION_TAG = re.compile(r"^(str|int|float|bool|list|dict|tuple|none)$|\[")  # pydantic's union members in a loc


def _got(value: Any) -> str:
    """A value as an error names it: strings, lists and tables by their type, other values as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    for kind, name in _TOML_TYPE_NAMES:
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _model_at(root: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model whose keys are at `loc` (list indices and table keys are passed over)."""
    model: type[BaseModel] = root
    for part in loc:
        if isinstance(part, str) and part in model.model_fields:
            nested = _nested_model(model.model_fields[part].annotation)
            if nested is None:
                return None
            model = nested
    return model


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if (found := _nested_model(arg)) is not None:
            return found
    return None


def _where(loc: Sequence[int | str], *, env: bool) -> str:
    if env:
        return ".".join(str(p).upper() for p in loc) or "(environment)"
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "(top level)"


_BOUNDS = {"greater_than_equal": "at least", "greater_than": "more than", "less_than_equal": "at most",
           "less_than": "less than"}


def _unknown_key(loc: list[int | str], root: type[BaseModel] | None) -> str:
    """"unknown key 'x'", with "did you mean 'y'?" when a known key is close (else the known keys)."""
    model = _model_at(root, loc[:-1]) if root is not None else None
    known = sorted(model.model_fields) if model is not None else []
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    hint = f": did you mean {close[0]!r}?" if close else f" (known keys: {', '.join(known)})" if known else ""
    return f"unknown key {str(loc[-1])!r}{hint}"


def _expected(loc: list[int | str], root: type[BaseModel] | None, kind: str) -> str:
    """What the value at `loc` should be: by example for the fields that have one, else by type."""
    named = str(loc[-1]) if loc else ""
    if root is not None and len(loc) > 1:
        model = _model_at(root, loc[:-1])
        if model is None or named not in model.model_fields:
            named = f"{loc[-2]}.*"  # a table's own key, such as a call type in call_types
    return _EXAMPLES.get(named, _EXPECTED[kind])


def _plain(item: ErrorDetails, root: type[BaseModel] | None) -> tuple[list[int | str], str, str | None]:
    """One pydantic error as (where, message, expected): `expected` is set for type errors, so the
    errors of one value against several types (a union) can be merged into one line."""
    loc = [p for p in item["loc"] if not (isinstance(p, str) and _UNION_TAG.search(p))]
    kind, value, ctx = item["type"], item.get("input"), item.get("ctx") or {}
    if kind == "extra_forbidden" and loc:
        return loc[:-1], _unknown_key(loc, root), None
    if kind == "missing" and loc:
        return loc[:-1], f"missing required key {str(loc[-1])!r}", None
    if kind in _EXPECTED:
        return loc, "", f"{_expected(loc, root, kind)}, got {_got(value)}"
    if kind in _BOUNDS:
        return loc, f"must be {_BOUNDS[kind]} {next(iter(ctx.values()), '?')}, got {value!r}", None
    plain = {"literal_error": f"expected {ctx.get('expected')}, got {value!r}", "string_too_short": "must not be empty",
             "string_pattern_mismatch": f"{value!r} does not match the pattern {ctx.get('pattern')}"}
    return loc, plain.get(kind) or item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, "), None


def _describe(error: ValidationError, source: str, root: type[BaseModel] | None = None) -> str:
    """`error` in plain words, one line per fault: "unknown key 'x': did you mean 'y'?", "expected a
    list of host patterns such as ["*.example.com"], got a string". With `root` (the model that was
    validated), unknown keys get a "did you mean"; without it, locations are environment variables."""
    env = root is None
    lines: dict[str, list[str]] = {}
    expected: dict[str, list[str]] = {}
    for item in error.errors():
        loc, message, wants = _plain(item, root)
        where = _where(loc, env=env)
        if wants is not None:
            expected.setdefault(where, []).append(wants)
        else:
            lines.setdefault(where, []).append(message)
    for where, each in expected.items():  # one value against each member of a union: one line
        got = each[0].rpartition(", got ")[2]
        options = list(dict.fromkeys(w.rpartition(", got ")[0] for w in each))
        lines.setdefault(where, []).append(f"expected {' or '.join(options)}, got {got}")
    body = [f"  {where}: {message}" for where, messages in lines.items() for message in messages]
    return "\n".join([f"{source}: invalid configuration", *body])


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
        raise ConfigError(_describe(exc, str(path), ArchiveConfig)) from None


_STREAM_VARIABLES = ("STREAM_API_KEY", "STREAM_API_SECRET")


def load_environment(environ: Mapping[str, str] | None = None) -> Environment:
    """The environment, Stream's credentials included (ConfigError, naming them, when they are missing)."""
    source = os.environ if environ is None else environ
    missing = [name for name in _STREAM_VARIABLES if not source.get(name)]
    if missing:
        raise ConfigError(
            "missing required environment variable(s): "
            + ", ".join(missing)
            + " (your Stream app's API key and secret, from the Stream dashboard)"
        )
    return _validate_environment(Environment, source)


def load_ledger_environment(environ: Mapping[str, str] | None = None) -> LedgerEnvironment:
    """The environment without Stream's credentials (ignored when they are set)."""
    return _validate_environment(LedgerEnvironment, os.environ if environ is None else environ)


_Env = TypeVar("_Env", bound=LedgerEnvironment)


def _validate_environment(model: type[_Env], source: Mapping[str, str]) -> _Env:
    names = {name.upper() for name in model.model_fields}
    values = {k.lower(): v for k, v in source.items() if k.upper() in names}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, "environment")) from None


def _archive(env: LedgerEnvironment) -> ArchiveConfig:
    """The TOML file named by ARCHIVER_CONFIG, with ARCHIVER_DOWNLOAD_HOSTS added to its download_hosts."""
    archive = load_archive_config(env.archiver_config)
    if not env.archiver_download_hosts:
        return archive
    hosts = tuple(dict.fromkeys(archive.download_hosts + env.archiver_download_hosts))
    return archive.model_copy(update={"download_hosts": hosts})


@overload
def load_settings(environ: Mapping[str, str] | None = None, *, require_stream: Literal[True] = True) -> Settings: ...


@overload
def load_settings(environ: Mapping[str, str] | None = None, *, require_stream: Literal[False]) -> LedgerSettings: ...


def load_settings(environ: Mapping[str, str] | None = None, *, require_stream: bool = True,
                  ) -> Settings | LedgerSettings:
    """Read the environment and the TOML file it names; raise ConfigError on any fault.

    With `require_stream` (the default), Stream's credentials are required and the result is a
    `Settings`, which code that signs requires; without it, a `LedgerSettings`, enough to read the
    ledger and the configuration."""
    if require_stream:
        env = load_environment(environ)
        return Settings(env=env, archive=_archive(env), config_path=env.archiver_config)
    ledger_env = load_ledger_environment(environ)
    return LedgerSettings(env=ledger_env, archive=_archive(ledger_env), config_path=ledger_env.archiver_config)
