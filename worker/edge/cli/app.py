"""The `archiver` command: run the service's parts, and look at the ledger.

This is the edge: it wires the domain (`worker`) to Celery (`tasks`), so it alone may import both
(lazily, so `archiver transfers …` never builds a Celery app).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TextIO

import redis
import structlog
import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperOption

from config import ConfigError, LedgerSettings, Settings, load_settings
from config.logging import configure_logging, redact_url, register_secrets
from worker.clock import rfc3339
from worker.edge.cli.discovery import backfill_command, reconcile_command
from worker.edge.cli.trial import try_command
from worker.errors import ArchiverError
from worker.ledger.connection import connect_env
from worker.ledger.models import LISTED_STATES
from worker.ledger.persistence import warn_about_persistence
from worker.ledger.store import Ledger

log = structlog.get_logger("worker.edge.cli.app")
app = typer.Typer(help="Archive Stream Video recordings and transcriptions into your own storage.",
                  no_args_is_help=True, add_completion=False)
transfers_app = typer.Typer(help="Look at the transfer ledger.", no_args_is_help=True)
app.add_typer(transfers_app, name="transfers")
storage_app = typer.Typer(help="The configured storages.", no_args_is_help=True)
app.add_typer(storage_app, name="storage")


def _width(stream: TextIO) -> int | None:
    """A terminal's own width; else (a pipe, a file) wide enough that no table is cut at 80 columns."""
    return None if stream.isatty() else 10_000


out = Console(soft_wrap=True, width=_width(sys.stdout))
err = Console(stderr=True, soft_wrap=True, width=_width(sys.stderr))

# Typer's rich help shows a flag's type as "<bool>" (typer 0.29), though a flag takes no value: show
# none. Older typer (the lowest allowed) has no such hook and shows no type for flags anyway.
_option_type = getattr(TyperOption, "display_type_rich", None)


def _flag_without_type(self: TyperOption, ctx: Any) -> str | None:
    return None if self.is_flag else _option_type(self, ctx)  # type: ignore[misc] # only installed when set


if _option_type is not None:
    setattr(TyperOption, "display_type_rich", _flag_without_type)  # noqa: B010 - a method, patched only where it exists
# The hidden option by which `archiver serve` tells its parts that it gave the start-up advice.
QUIET_START = typer.Option("--quiet-start", hidden=True, help="Start-up advice was given by `archiver serve`.")


def _configuration_error(exc: ConfigError) -> typer.Exit:
    err.print(f"[bold red]configuration error:[/] {exc}", highlight=False, markup=True)
    return typer.Exit(2)


def _settings() -> LedgerSettings:
    """The configuration without Stream's credentials, enough to read the ledger and the storages
    (`archiver transfers …`, `archiver storage …`); or stop with its error (exit 2)."""
    try:
        settings = load_settings(require_stream=False)
    except ConfigError as exc:
        raise _configuration_error(exc) from None
    register_secrets(settings.secrets())
    configure_logging(settings.env.archiver_log_level, settings.env.archiver_log_format)
    return settings


def _stream_settings(*, advise: bool = True) -> Settings:
    """The configuration with Stream's credentials, for commands that talk to Stream or receive its
    webhooks; or stop with its error (exit 2). With `advise`, a short signing secret is said once,
    here, as advice (PyJWT's own warning, on every token, is silenced in worker.stream.client)."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise _configuration_error(exc) from None
    register_secrets(settings.secrets())
    configure_logging(settings.env.archiver_log_level, settings.env.archiver_log_format)
    advice = settings.env.signing_secret_advice() if advise else None
    if advice is not None:
        log.info("stream_api_secret_short", advice=advice)
    return settings


def _check_storages(settings: Settings, *, probe: bool = False) -> None:
    """Stop (exit 2) when a configured storage cannot even be built (unknown type, bad options).

    With `probe`, also run each storage's check (as `archiver storage check` does): a storage that
    fails it is reported loudly, but the others keep being served.
    """
    from worker.monitoring.stats import stats_for  # noqa: PLC0415
    from worker.runtime import Runtime  # noqa: PLC0415
    from worker.storage.probe import check_storage  # noqa: PLC0415

    runtime = Runtime.from_settings(settings)
    try:
        runtime.check_storages()
        for storage in settings.archive.effective_storages() if probe else ():
            report = check_storage(runtime.storage(storage.name), settings.archive.transfer)
            stats_for(runtime.ledger).storage_checked(storage.name, report.ok, report.reason)  # for /metrics
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


def _ledger(settings: LedgerSettings, *, fail_fast: bool = False, starting: str | None = None) -> Ledger:
    """The ledger, or stop (exit 3) when Redis is unreachable. A service part `starting` also logs
    a warning for each Redis setting that puts the ledger at risk (never stops for them)."""
    ledger = Ledger(connect_env(settings.env, fail_fast=fail_fast))
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


def _celery_enqueue() -> Callable[[Sequence[str]], None]:
    """The function that hands ledger ids to Celery (imported only by commands that queue)."""
    from tasks.app import enqueue  # noqa: PLC0415 - the edge imports Celery lazily

    return enqueue


@app.command()
def web(host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
        workers: Annotated[int, typer.Option("--workers", "-w", min=1,
                                             help="Receiver processes on the one port (one core each).")] = 1,
        quiet_start: Annotated[bool, QUIET_START] = False,
        ) -> None:
    """Run the webhook receiver (POST /webhooks/stream, GET /healthz, GET /readyz, GET /metrics, GET /)."""
    import uvicorn  # noqa: PLC0415

    options: dict[str, Any] = {"host": host, "port": port, "log_config": None, "access_log": False,
                               "timeout_graceful_shutdown": 20}
    if workers == 1:
        uvicorn.run(web_app(quiet_start=quiet_start), **options)
    else:  # each process builds its own app (settings, ledger, broker connection) from the environment
        settings = _stream_settings(advise=not quiet_start)  # a bad configuration stops here, once
        if not quiet_start:
            _ledger(settings, starting="web").redis.close()  # the advice on Redis, once too
        uvicorn.run("worker.edge.cli.app:web_app_quiet", factory=True, workers=workers, **options)


def web_app(*, quiet_start: bool = False) -> Any:
    """The receiver's ASGI app, from the environment."""
    from worker.edge.web.app import create_app  # noqa: PLC0415

    settings = _stream_settings(advise=not quiet_start)
    ledger = _ledger(settings, fail_fast=True, starting=None if quiet_start else "web")
    return create_app(settings, ledger, _celery_enqueue())


def web_app_quiet() -> Any:
    """uvicorn's factory for ``--workers``: the app of one process, without the start-up advice
    (the parent gave it)."""
    return web_app(quiet_start=True)


@app.command()
def worker(concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Transfer processes.")] = 2,
           quiet_start: Annotated[bool, QUIET_START] = False,
           ) -> None:
    """Run a Celery worker that performs transfers."""
    settings = _stream_settings(advise=not quiet_start)
    _check_storages(settings, probe=True)
    _ledger(settings, starting=None if quiet_start else "worker")
    from config.celery import TRANSFER_QUEUE  # noqa: PLC0415
    from tasks.app import app as celery_app  # noqa: PLC0415

    # --quiet: no plain-text banner on stdout, amid the JSON log lines (its facts are logged as `worker_starting`)
    log.info("worker_starting", queue=TRANSFER_QUEUE, concurrency=concurrency, broker=redact_url(settings.broker_url))
    celery_app.worker_main(["--quiet", "worker", "-Q", TRANSFER_QUEUE, "-c", str(concurrency), "-P", "prefork",
                            "--without-gossip", "--without-mingle", "-l", settings.env.archiver_log_level])


@app.command()
def scheduler(quiet_start: Annotated[bool, QUIET_START] = False) -> None:
    """Queue due transfers every `sweep_every` (one scheduler at a time, under a Redis lock);
    reconcile with Stream's listings every `reconcile_every` (the calls changed since the last time)
    and `full_reconcile_every` (every call of `retention`), and then delete archived files from
    Stream when `delete_from_stream` is on."""
    from worker.discovery.deletion import delete_archived  # noqa: PLC0415
    from worker.discovery.reconcile import never_reconciled, reconcile, reconcile_if_due  # noqa: PLC0415
    from worker.monitoring.health import HEALTH_EVERY, check_health  # noqa: PLC0415
    from worker.runtime import Runtime  # noqa: PLC0415
    from worker.scheduler import PeriodicJob, run_scheduler  # noqa: PLC0415

    settings = _stream_settings(advise=not quiet_start)
    ledger = _ledger(settings, starting=None if quiet_start else "scheduler")
    runtime = Runtime.from_settings(settings)
    every, enqueue = settings.archive.reconcile_every.total_seconds(), _celery_enqueue()
    full = PeriodicJob("full_reconcile", every, lambda: reconcile_if_due(runtime, enqueue))  # runs when due

    def incremental() -> object:  # before any watermark, a running full run covers the same window
        return None if full.running and never_reconciled(runtime) else reconcile(runtime, enqueue)

    jobs = [full, PeriodicJob("reconcile", every, incremental)]
    if settings.archive.delete_from_stream:
        jobs.append(PeriodicJob("delete_from_stream", every, lambda: delete_archived(runtime, dry_run=False)))
    jobs.append(PeriodicJob("storage_health", HEALTH_EVERY, lambda: check_health(runtime)))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        run_scheduler(ledger, settings.archive, enqueue, stop, jobs)
    finally:
        runtime.close()


@app.command()
def sqs(queue_url: Annotated[str, typer.Option("--queue-url", help="The SQS queue Stream delivers events to.")],
        region: Annotated[str | None, typer.Option(help="AWS region (default: the environment's).")] = None,
        endpoint_url: Annotated[str | None, typer.Option(help="An SQS-compatible endpoint.")] = None,
        wait_seconds: Annotated[int, typer.Option(help="Long-poll wait per receive.", min=0, max=20)] = 20,
        ) -> None:
    """Take Stream's events from an SQS queue (or SNS → SQS): the same intake as the webhook; a
    message is deleted only once the ledger holds its file."""
    from worker.intake.sqs import run_sqs_intake, sqs_client  # noqa: PLC0415

    settings = _stream_settings()
    ledger = _ledger(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    run_sqs_intake(settings, ledger, _celery_enqueue(), sqs_client(region, endpoint_url), queue_url, stop,
                   wait_seconds=wait_seconds)


@app.command("delete-archived")
def delete_archived_command(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would be deleted.")] = False,
) -> None:
    """Delete from Stream every file that every destination has archived and verified."""
    from worker.discovery.deletion import delete_archived  # noqa: PLC0415
    from worker.runtime import Runtime  # noqa: PLC0415

    settings = _stream_settings()
    _ledger(settings)
    runtime = Runtime.from_settings(settings)
    try:
        summary = delete_archived(runtime, dry_run=dry_run)
    finally:
        runtime.close()
    table = Table("call_cid", "kind", "filename", "archived at")
    for item in summary.candidates:
        table.add_row(item.call_cid, item.kind, item.filename, ", ".join(item.destinations))
    out.print(table)
    if dry_run:
        out.print(f"{len(summary.candidates)} file(s) would be deleted from Stream (dry run: nothing deleted)")
        return
    out.print(f"deleted {summary.deleted}, already gone {summary.already_gone}, failed {summary.failed}, "
              f"skipped {summary.skipped} (an archived object no longer matched: queued again)")
    if summary.failed or summary.skipped:
        raise typer.Exit(1)


@app.command()
def serve(host: Annotated[str, typer.Option(help="Interface for the webhook receiver.")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="Port for the webhook receiver.")] = 8000,
          concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Transfer processes.")] = 2,
          ) -> None:
    """Run web receiver, worker and scheduler together on this machine."""
    from worker.edge.cli.service import serve_all  # noqa: PLC0415
    from worker.ledger.localredis import reachable  # noqa: PLC0415

    settings = _stream_settings()
    _check_storages(settings)
    if reachable(settings.env.redis_url):  # else serve_all starts one, and each process checks the schema
        _ledger(settings, starting="serve").redis.close()  # the advice on Redis, once for the three parts
    raise typer.Exit(serve_all(settings, host=host, port=port, concurrency=concurrency, console=out))


@transfers_app.command("list")
def list_transfers(
    state: Annotated[str | None, typer.Option(help=f"Only this state: {', '.join(LISTED_STATES)}.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List transfers, oldest first, and files waiting for their routes (state routing: no storage yet)."""
    from worker.ledger.unrouted import listed_rows  # noqa: PLC0415

    if state is not None and state not in LISTED_STATES:
        err.print(f"unknown state {state!r}; one of: {', '.join(LISTED_STATES)}")
        raise typer.Exit(2)
    ledger = _ledger(_settings())
    rows = listed_rows(ledger, state)
    if as_json:
        for row in rows:
            sys.stdout.write(json.dumps(row) + "\n")
        return
    table = Table("id", "state", "call_cid", "kind", "filename", "storage", "bytes", "attempts", "expires_at",
                  "error")
    for r in rows:
        table.add_row(r["id"], r["state"], r["call_cid"], r["kind"], r["filename"], r["storage"] or "",
                      "" if r["bytes"] is None else str(r["bytes"]), str(r["attempts"]), r["expires_at"] or "",
                      (r["error"] or "")[:80])
    out.print(table)


RETRYABLE = ("failed", "lost")


@transfers_app.command("retry")
def retry_transfers(
    transfer_ids: Annotated[list[str] | None, typer.Argument(help="Transfer ids (t_…).")] = None,
    state: Annotated[str | None, typer.Option(help="Every transfer in this state: failed or lost.")] = None,
) -> None:
    """Queue failed (or lost) transfers again, e.g. after fixing a storage's credentials."""
    if state is not None and state not in RETRYABLE:
        err.print(f"cannot retry by state {state!r}: only failed or lost transfers are retried")
        raise typer.Exit(2)
    if bool(transfer_ids) == (state is not None):
        err.print("give transfer ids, or --state failed (or lost), not both")
        raise typer.Exit(2)
    ledger = _ledger(_stream_settings())  # it hands them to the workers: the Celery app needs the full settings
    ids = list(dict.fromkeys(transfer_ids or ledger.ids(state)))
    if not ids:
        err.print(f"no {state} transfers: nothing to retry")
        raise typer.Exit(1)
    retried = [tid for tid in ids if ledger.retry(tid)]
    for tid in sorted(set(ids) - set(retried)):
        transfer = ledger.get(tid)
        state_of = transfer.state if transfer is not None else _routing_or_none(ledger, tid)
        err.print(f"{tid}: no such transfer" if state_of is None
                  else f"{tid}: {state_of}, not failed or lost; left as it is")
    for tid in retried:
        out.print(f"queued {tid}", highlight=False)
    if retried:
        _hand_over(ledger.soonest_to_expire(retried))
    out.print(f"queued {len(retried)} transfer(s) again")
    if len(retried) != len(ids):
        raise typer.Exit(1)


def _routing_or_none(ledger: Ledger, file_id: str) -> str | None:
    """``routing`` for a file waiting for its routes (it is retried by itself), else None."""
    from worker.ledger.unrouted import waiting_files  # noqa: PLC0415

    return "routing (waiting for its routes; tried again by itself)" if waiting_files(ledger, [file_id]) else None


def _hand_over(transfer_ids: list[str]) -> None:
    """Queue `transfer_ids` (already due in the ledger) for the workers; when the broker fails, say
    that the scheduler's sweep will queue them."""
    try:
        _celery_enqueue()(transfer_ids)
    except Exception as exc:  # noqa: BLE001 - the ledger holds them as due: the sweep queues them
        err.print(f"could not hand them to the workers now ({type(exc).__name__}: {exc}); they are due in "
                  "the ledger, and `archiver scheduler` queues them at its next sweep", highlight=False)


@transfers_app.command("export")
def export_transfers(
    fmt: Annotated[str, typer.Option("--format", help="csv (a header row) or json (one array).")] = "csv",
    state: Annotated[str | None, typer.Option(help=f"Only this state: {', '.join(LISTED_STATES)}.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).",
                                                dir_okay=False)] = None,
) -> None:
    """The ledger for audits: one row per transfer (and per file waiting for its routes) with its
    file's facts (never the signed URL)."""
    from worker.ledger.export import FORMATS, write_export  # noqa: PLC0415

    if fmt not in FORMATS:
        err.print(f"unknown format {fmt!r}; one of: {', '.join(FORMATS)}")
        raise typer.Exit(2)
    if state is not None and state not in LISTED_STATES:
        err.print(f"unknown state {state!r}; one of: {', '.join(LISTED_STATES)}")
        raise typer.Exit(2)
    ledger = _ledger(_settings())
    if output is None:
        count = write_export(ledger, sys.stdout, "json" if fmt == "json" else "csv", state)
        err.print(f"exported {count} transfer(s)")
        return
    partial = output.with_name(f".{output.name}.partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as stream:
            count = write_export(ledger, stream, "json" if fmt == "json" else "csv", state)
        partial.replace(output)  # a complete export, or none
    except OSError as exc:
        partial.unlink(missing_ok=True)
        err.print(f"cannot write {output}: {exc.strerror}")
        raise typer.Exit(1) from None
    err.print(f"exported {count} transfer(s) to {output}", highlight=False)


@transfers_app.command("prune")
def prune_transfers(
    older_than: Annotated[str, typer.Option("--older-than", help="Archived longer ago than this (e.g. 90d).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would be pruned.")] = False,
) -> None:
    """Forget archived transfers (and their files' records) archived long ago. Only archived ones:
    queued, transferring, failed, lost and skipped transfers are never touched."""
    from config.settings import parse_duration  # noqa: PLC0415
    from worker.clock import from_ms  # noqa: PLC0415
    from worker.discovery.deletion import object_problem  # noqa: PLC0415
    from worker.ledger.prune import prune_archived  # noqa: PLC0415
    from worker.storage import Storage  # noqa: PLC0415
    from worker.storage.registry import build_storage  # noqa: PLC0415

    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        err.print(f"--older-than: {exc}")
        raise typer.Exit(2) from None
    if age.total_seconds() <= 0:
        err.print("--older-than must be a positive duration, such as 90d")
        raise typer.Exit(2)
    settings = _settings()
    ledger, storages = _ledger(settings), dict[str, Storage]()

    def storage_of(name: str) -> Storage:  # KeyError for a storage no longer configured: kept, unverified
        if name not in storages:
            storages[name] = build_storage(settings.archive.storage(name), settings.archive.transfer)
        return storages[name]

    try:  # an entry whose object no longer matches is kept: it is the record of what went wrong
        summary = prune_archived(ledger, age, dry_run=dry_run,
                                 check=lambda t: found[0] if (found := object_problem(storage_of, t)) else None)
    finally:
        for storage in storages.values():
            storage.close()
    verb = "would prune" if dry_run else "pruned"
    out.print(f"{verb} {summary.transfers} archived transfer(s) and {summary.files} file record(s) archived "
              f"before {rfc3339(from_ms(summary.cutoff_ms))}", highlight=False)
    if summary.outcomes["object_changed"]:
        out.print(f"kept {summary.outcomes['object_changed']} archived transfer(s) whose object no longer "
                  "matches what was archived (see the prune_skipped log lines)", highlight=False)
    if summary.kept_at_stream:
        out.print(f"kept {summary.kept_at_stream} archived transfer(s) whose files Stream still holds "
                  "(they would be recorded and uploaded again)", highlight=False)
    if dry_run:
        out.print("dry run: nothing deleted")


@transfers_app.command("show")
def show_transfer(transfer_id: Annotated[str, typer.Argument(
        help="A transfer id (t_…), or the id of a file waiting for its routes.")]) -> None:
    """Show one transfer (or a file waiting for its routes: state routing) as JSON."""
    from worker.ledger.unrouted import waiting_files  # noqa: PLC0415

    ledger = _ledger(_settings())
    transfer = ledger.get(transfer_id)
    waiting = [] if transfer is not None else waiting_files(ledger, [transfer_id])
    if transfer is None and not waiting:
        err.print(f"no transfer {transfer_id!r}")
        raise typer.Exit(1)
    row = transfer.to_json() if transfer is not None else waiting[0].to_json()
    sys.stdout.write(json.dumps(row, indent=2) + "\n")


@app.command()
def doctor() -> None:
    """Check Stream's credentials, Redis (reachable, persistence, eviction) and every storage."""
    from worker.monitoring.doctor import diagnose  # noqa: PLC0415
    from worker.runtime import Runtime  # noqa: PLC0415

    settings = _stream_settings()
    runtime = Runtime.from_settings(settings)
    try:
        findings = diagnose(runtime)
    finally:
        runtime.close()
    table = Table("", "what", "finding")
    for finding in findings:
        table.add_row("[green]ok[/]" if finding.ok else "[red]PROBLEM[/]", finding.area, finding.detail)
    out.print(table)
    problems = [f for f in findings if not f.ok]
    if problems:
        err.print(f"[bold red]{len(problems)} problem(s)[/]", highlight=False)
        raise typer.Exit(1)


@storage_app.command("list")
def list_storages(as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
                  ) -> None:
    """Names, types, buckets, prefixes, and which call types route where (secrets masked)."""
    from worker.storage.listing import describe_storages  # noqa: PLC0415

    rows = describe_storages(_settings().archive)
    if as_json:
        for row in rows:
            sys.stdout.write(json.dumps(row) + "\n")
        return
    table = Table("name", "type", "bucket", "path", "endpoint", "credentials", "routes")
    for row in rows:
        table.add_row(row["name"], row["storage_type"], row["bucket"], row["path"], row["endpoint"] or "",
                      row["credentials"], ", ".join(row["routes"]))
    out.print(table)


@storage_app.command("check")
def check_storage_command(name: Annotated[str, typer.Argument(help="A storage name from the configuration.")],
                          ) -> None:
    """Write, read back, verify and remove probe objects (like Stream's check, and more)."""
    from worker.storage.probe import check_storage  # noqa: PLC0415
    from worker.storage.registry import build_storage  # noqa: PLC0415

    archive = _settings().archive
    if name not in {s.name for s in archive.effective_storages()}:
        err.print(f"no storage named {name!r} in the configuration")
        raise typer.Exit(2)
    try:
        storage = build_storage(archive.storage(name), archive.transfer)
    except (ConfigError, ValueError) as exc:
        err.print(f"[bold red]{name}: cannot be used[/]: {exc}", highlight=False)
        raise typer.Exit(1) from None
    try:
        report = check_storage(storage, archive.transfer)
    except ArchiverError as exc:
        err.print(f"[bold red]{name}: cannot be used[/]: {exc}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        storage.close()
    table = Table("step", "ok", "seconds", "detail")
    for step in report.steps:
        table.add_row(step.name, "yes" if step.ok else "[red]NO[/]", f"{step.seconds:.2f}", step.detail)
    out.print(f"{report.storage}: {report.described}")
    out.print(table)
    if not report.ok:
        err.print(f"[bold red]check failed[/] ({report.reason}): {report.message}", highlight=False)
        raise typer.Exit(1)
    out.print("[green]ok[/]")


app.command("backfill")(backfill_command)
app.command("reconcile")(reconcile_command)
app.command("try")(try_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
