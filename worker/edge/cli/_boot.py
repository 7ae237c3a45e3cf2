"""What every `archiver` command starts with: the configuration, the ledger, the consoles, and the
lazy hand-over to Celery; each stops the command with its exit code when it cannot be had.

Exit codes: 2 the configuration is bad (or the ledger's schema is newer than this archiver's);
3 Redis is unreachable.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TextIO

import redis
import structlog
import typer
from rich.console import Console

from config import ConfigError, LedgerSettings, Settings, load_settings
from config.logging import configure_logging, register_secrets
from worker.ledger.connection import connect_env
from worker.ledger.persistence import warn_about_persistence
from worker.ledger.store import Ledger

log = structlog.get_logger(__name__)


def _width(stream: TextIO) -> int | None:
    """A terminal's own width; else (a pipe, a file) wide enough that no table is cut at 80 columns."""
    return None if stream.isatty() else 10_000


out = Console(soft_wrap=True, width=_width(sys.stdout))
err = Console(stderr=True, soft_wrap=True, width=_width(sys.stderr))
# The hidden option by which `archiver serve` tells its parts that it gave the start-up advice.
QUIET_START = typer.Option("--quiet-start", hidden=True, help="Start-up advice was given by `archiver serve`.")


def configuration_error(exc: ConfigError) -> typer.Exit:
    """Say what is wrong with the configuration; the exit (2) to raise."""
    err.print(f"[bold red]configuration error:[/] {exc}", highlight=False, markup=True)
    return typer.Exit(2)


def ledger_settings() -> LedgerSettings:
    """The configuration without Stream's credentials, enough to read the ledger and the storages
    (`archiver transfers …`, `archiver storage …`); or stop with its error (exit 2)."""
    try:
        settings = load_settings(require_stream=False)
    except ConfigError as exc:
        raise configuration_error(exc) from None
    register_secrets(settings.secrets())
    configure_logging(settings.env.archiver_log_level, settings.env.archiver_log_format)
    return settings


def stream_settings(*, advise: bool = True) -> Settings:
    """The configuration with Stream's credentials, for commands that talk to Stream or receive its
    webhooks; or stop with its error (exit 2). With `advise`, a short signing secret is said once,
    here, as advice (PyJWT's own warning, on every token, is silenced in worker.stream.client)."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise configuration_error(exc) from None
    register_secrets(settings.secrets())
    configure_logging(settings.env.archiver_log_level, settings.env.archiver_log_format)
    advice = settings.env.signing_secret_advice() if advise else None
    if advice is not None:
        log.info("stream_api_secret_short", advice=advice)
    return settings


def check_storages(settings: Settings, *, probe: bool = False) -> None:
    """Stop (exit 2) when a configured storage cannot even be built (unknown type, bad options).

    With `probe`, also run each storage's check (as `archiver storage check` does): a storage that
    fails it is reported loudly, but the others keep being served.
    """
    from worker.runtime import Runtime  # noqa: PLC0415
    from worker.storage.probe import check_storage  # noqa: PLC0415

    runtime = Runtime.from_settings(settings)
    try:
        runtime.check_storages()
        for storage in settings.archive.effective_storages() if probe else ():
            report = check_storage(runtime.storage(storage.name), settings.archive.transfer)
            runtime.stats.storage_checked(storage.name, report.ok, report.reason)  # for /metrics
            if report.ok:
                log.info("storage_check_passed", storage=storage.name, where=report.described)
            else:
                log.error("storage_check_failed", storage=storage.name, reason=report.reason, error=report.message,
                          note="transfers to this storage will be retried; the others are served")
    except ConfigError as exc:
        err.print(f"[bold red]configuration error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    finally:
        runtime.close()


def open_ledger(settings: LedgerSettings, *, fail_fast: bool = False, starting: str | None = None,
                actor: str = "cli") -> Ledger:
    """The ledger, or stop (exit 3) when Redis is unreachable. A service part `starting` also logs
    a warning for each Redis setting that puts the ledger at risk (never stops for them). `actor`:
    who makes its changes, in the audit log."""
    from worker.notify.outbox import routes_json  # noqa: PLC0415

    ledger = Ledger(connect_env(settings.env, fail_fast=fail_fast), outbox=routes_json(settings.archive), actor=actor)
    try:
        ledger.redis.ping()
    except redis.RedisError as exc:
        err.print(f"[bold red]Redis is unreachable[/] (REDIS_URL): {exc}", highlight=False)
        raise typer.Exit(3) from None
    _check_schema(ledger)
    if starting is not None:
        warn_about_persistence(ledger.redis, starting)
    return ledger


def _check_schema(ledger: Ledger) -> None:
    """Bring the ledger's schema version to this archiver's, or stop: exit 2 when the ledger is newer
    (or its version unknown), 3 when Redis fails meanwhile."""
    from worker.errors import LedgerSchemaError  # noqa: PLC0415
    from worker.ledger.schema import SCHEMA_VERSION, ensure_schema  # noqa: PLC0415

    try:
        ensure_schema(ledger)
    except LedgerSchemaError as exc:
        err.print(f"[bold red]cannot use this ledger[/] (REDIS_URL): {exc}. This archiver supports ledger "
                  f"schema version {SCHEMA_VERSION}; the ledger has {exc.found or 'none'}.", highlight=False)
        raise typer.Exit(2) from None
    except redis.RedisError as exc:
        err.print(f"[bold red]Redis failed[/] while checking the ledger's schema version: {exc}", highlight=False)
        raise typer.Exit(3) from None


def celery_enqueue() -> Callable[[Sequence[str]], None]:
    """The function that hands ledger ids to Celery (imported only by commands that queue)."""
    from tasks.app import enqueue  # noqa: PLC0415 - the edge imports Celery lazily

    return enqueue
