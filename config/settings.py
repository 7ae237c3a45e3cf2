"""Typed, frozen settings: environment variables plus the TOML file named by ARCHIVER_CONFIG.

`load_settings` reads both once. The pieces live by subject: `config.environment` (the variables),
`config.archive` (the TOML file), `config.storages` (its ``[[storages]]``), `config.types` (durations,
secrets, routes) and `config.errors` (ConfigError and its plain-words messages).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal, overload
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from config.archive import ArchiveConfig, load_archive_config
from config.environment import Environment, LedgerEnvironment, load_environment, load_ledger_environment
from config.storages import storage_secrets


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
        found += [n.secret.get_secret_value() for n in self.archive.notify if n.secret is not None]
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
