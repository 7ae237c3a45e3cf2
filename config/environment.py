"""The environment variables: Redis, logging, the web pages' tokens, and Stream's credentials."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BeforeValidator, Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from config.errors import ConfigError, describe

# PyJWT's advice for HS256 (RFC 7518 §3.2): a key of at least 256 bits.
SHORT_SECRET_BYTES = 32


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

    stream_base_url: str = Field(default="https://video.stream-io-api.com", description="Stream's video API base URL.")
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="The Redis that holds the ledger (and the Celery broker, unless ARCHIVER_BROKER_URL): "
                    "redis://, rediss://, unix://, or sentinel:// URLs joined by ';' "
                    "(sentinel://h1:26379;sentinel://h2:26379).")
    archiver_broker_url: str | None = Field(default=None, description="The Celery broker, when not REDIS_URL.")
    redis_sentinel_master: str | None = Field(
        default=None, description="With sentinel:// URLs: the master the Sentinels watch.")
    redis_sentinel_password: SecretStr | None = Field(
        default=None, description="With sentinel:// URLs: the Sentinels' own password, if they have one (the URL's "
                                  "password is the master's).")
    archiver_config: Path | None = Field(
        default=None, description="The TOML file (below); unset: its defaults, archiving into ./archive.")
    archiver_download_hosts: Annotated[tuple[str, ...], BeforeValidator(_host_list)] = Field(
        default=(),
        description='Host patterns separated by commas (e.g. "127.0.0.1:8080,files.example.com"), allowed for '
                    "downloads in addition to the TOML file's download_hosts (never instead of them): for quick "
                    "trials without editing the file. A private address needs its exact host or host:port; plain "
                    "http or a port other than 443 needs its exact host:port.")
    archiver_log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: JSON lines unless standard error is a terminal.")
    archiver_log_level: str = Field(default="INFO", description="The least severe level logged, e.g. DEBUG.")
    archiver_status_token: SecretStr | None = Field(
        default=None, description="The status page (GET /): off (404) without it.")
    archiver_metrics_token: SecretStr | None = Field(
        default=None, description="When set, GET /metrics needs `Authorization: Bearer <this token>` (401 "
                                  "otherwise); unset, it is open.")

    @model_validator(mode="after")
    def _sentinel_master_named(self) -> LedgerEnvironment:
        urls = [u for u in (self.redis_url, self.archiver_broker_url) if u]
        if any(u.strip().lower().startswith("sentinel://") for u in urls) and not self.redis_sentinel_master:
            raise ValueError("REDIS_SENTINEL_MASTER must name the master the Sentinels watch "
                             "(REDIS_URL or ARCHIVER_BROKER_URL is a sentinel:// URL)")
        return self


class Environment(LedgerEnvironment):
    """Environment variables, with Stream's credentials (required by every command that talks to Stream)."""

    stream_api_key: str = Field(min_length=1, description="Your Stream app's API key, from Stream's dashboard.")
    # The field holds the first secret alone, the one that signs API calls; `stream_api_secrets` lists them all.
    stream_api_secret: SecretStr = Field(
        description='Your Stream app\'s API secret; while rotating, several separated by commas ("new,old"): the '
                    "first signs API calls, any of them authenticates a webhook.")

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


def split_secrets(value: str) -> list[str]:
    """STREAM_API_SECRET's secrets: separated by commas, spaces around them dropped."""
    return [item.strip() for item in value.split(",")]


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
        raise ConfigError(describe(exc, "environment")) from None
