"""The service's parts as commands: `archiver web`, `worker`, `scheduler`, `sqs`, and `serve`, which
runs the first three on one machine as supervised processes (starting a local Redis when none answers).

The worker and the scheduler import Celery (`tasks`) only once they run.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import redis
import typer
from rich.console import Console

from config import Settings
from config.logging import redact_url
from worker.edge.cli._boot import QUIET_START, celery_enqueue, check_storages, log, open_ledger, out, stream_settings
from worker.edge.web import paths
from worker.ledger.localredis import reachable, start_local_redis
from worker.ledger.persistence import fitness_line

LOCAL_REDIS_DIR = Path(".archiver/redis")
WEB_APP_FACTORY = "worker.edge.cli.service:web_app_quiet"  # what each of `web --workers N`'s processes runs


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
        settings = stream_settings(advise=not quiet_start)  # a bad configuration stops here, once
        if not quiet_start:
            open_ledger(settings, starting="web").redis.close()  # the advice on Redis, once too
        uvicorn.run(WEB_APP_FACTORY, factory=True, workers=workers, **options)


def web_app(*, quiet_start: bool = False) -> Any:
    """The receiver's ASGI app, from the environment."""
    from worker.edge.web.app import create_app  # noqa: PLC0415

    settings = stream_settings(advise=not quiet_start)
    ledger = open_ledger(settings, fail_fast=True, starting=None if quiet_start else "web", actor="web")
    return create_app(settings, ledger, celery_enqueue())


def web_app_quiet() -> Any:
    """uvicorn's factory for ``--workers``: the app of one process, without the start-up advice
    (the parent gave it)."""
    return web_app(quiet_start=True)


def worker(concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Transfer processes.")] = 2,
           quiet_start: Annotated[bool, QUIET_START] = False,
           ) -> None:
    """Run a Celery worker that performs transfers."""
    settings = stream_settings(advise=not quiet_start)
    check_storages(settings, probe=True)
    open_ledger(settings, starting=None if quiet_start else "worker")
    from config.celery import TRANSFER_QUEUE  # noqa: PLC0415
    from tasks.app import app as celery_app  # noqa: PLC0415

    # --quiet: no plain-text banner on stdout, amid the JSON log lines (its facts are logged as `worker_starting`)
    log.info("worker_starting", queue=TRANSFER_QUEUE, concurrency=concurrency, broker=redact_url(settings.broker_url))
    celery_app.worker_main(["--quiet", "worker", "-Q", TRANSFER_QUEUE, "-c", str(concurrency), "-P", "prefork",
                            "--without-gossip", "--without-mingle", "-l", settings.env.archiver_log_level])


def scheduler(quiet_start: Annotated[bool, QUIET_START] = False) -> None:
    """Queue due transfers every `sweep_every` (one scheduler at a time, under a Redis lock);
    reconcile with Stream's listings every `reconcile_every` (the calls changed since the last time)
    and `full_reconcile_every` (every call of `retention`), and then delete archived files from
    Stream when `delete_from_stream` is on; audit the last `retention` every `audit_every`; export
    the audit log every `audit_log_every`."""
    from worker.audit.run import audit_job  # noqa: PLC0415
    from worker.auditlog.export import export_job  # noqa: PLC0415
    from worker.discovery.deletion import delete_archived  # noqa: PLC0415
    from worker.discovery.reconcile import never_reconciled, reconcile, reconcile_if_due  # noqa: PLC0415
    from worker.monitoring.health import HEALTH_EVERY, check_health  # noqa: PLC0415
    from worker.runtime import Runtime  # noqa: PLC0415
    from worker.scheduler import PeriodicJob, run_scheduler  # noqa: PLC0415

    settings = stream_settings(advise=not quiet_start)
    ledger = open_ledger(settings, starting=None if quiet_start else "scheduler")
    runtime = Runtime.from_settings(settings, actor="scheduler")
    every, enqueue = settings.archive.reconcile_every.total_seconds(), celery_enqueue()
    full = PeriodicJob("full_reconcile", every, lambda: reconcile_if_due(runtime, enqueue))  # runs when due

    def incremental() -> object:  # before any watermark, a running full run covers the same window
        return None if full.running and never_reconciled(runtime) else reconcile(runtime, enqueue)

    jobs = [full, PeriodicJob("reconcile", every, incremental)]
    if settings.archive.delete_from_stream:
        jobs.append(PeriodicJob("delete_from_stream", every, lambda: delete_archived(runtime, dry_run=False)))
    jobs.append(PeriodicJob("storage_health", HEALTH_EVERY, lambda: check_health(runtime)))
    jobs.append(audit_job(runtime, enqueue))
    jobs.append(export_job(runtime))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        run_scheduler(ledger, settings.archive, enqueue, stop, jobs)
    finally:
        runtime.close()


def sqs(queue_url: Annotated[str, typer.Option("--queue-url", help="The SQS queue Stream delivers events to.")],
        region: Annotated[str | None, typer.Option(help="AWS region (default: the environment's).")] = None,
        endpoint_url: Annotated[str | None, typer.Option(help="An SQS-compatible endpoint.")] = None,
        wait_seconds: Annotated[int, typer.Option(help="Long-poll wait per receive.", min=0, max=20)] = 20,
        ) -> None:
    """Take Stream's events from an SQS queue (or SNS → SQS): the same intake as the webhook; a
    message is deleted only once the ledger holds its file."""
    from worker.intake.sqs import run_sqs_intake, sqs_client  # noqa: PLC0415

    settings = stream_settings()
    ledger = open_ledger(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    run_sqs_intake(settings, ledger, celery_enqueue(), sqs_client(region, endpoint_url), queue_url, stop,
                   wait_seconds=wait_seconds)


def serve(host: Annotated[str, typer.Option(help="Interface for the webhook receiver.")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="Port for the webhook receiver.")] = 8000,
          concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Transfer processes.")] = 2,
          ) -> None:
    """Run web receiver, worker and scheduler together on this machine."""
    settings = stream_settings()
    check_storages(settings)
    if reachable(settings.env.redis_url):  # else serve_all starts one, and each process checks the schema
        open_ledger(settings, starting="serve").redis.close()  # the advice on Redis, once for the three parts
    raise typer.Exit(serve_all(settings, host=host, port=port, concurrency=concurrency, console=out))


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "worker.edge.cli.app", *args])  # noqa: S603


def serve_all(settings: Settings, *, host: str, port: int, concurrency: int, console: Console) -> int:
    """Run web, worker and scheduler until one of them exits or we are told to stop."""
    redis_process = None
    if not reachable(settings.env.redis_url):
        try:
            redis_process = start_local_redis(settings.env.redis_url, LOCAL_REDIS_DIR)
        except RuntimeError as exc:
            console.print(f"[bold red]cannot start:[/] {exc}")
            return 3
        console.print(f"started redis-server for {settings.env.redis_url} (data in {LOCAL_REDIS_DIR}/)")
    elif not settings.env.redis_url.startswith("sentinel://"):
        client = redis.Redis.from_url(settings.env.redis_url, socket_connect_timeout=2, socket_timeout=5)
        with client:
            console.print(fitness_line(client, settings.env.redis_url), markup=False)
    # The parts start quietly: the start-up advice (Redis persistence, a short secret) was given once, here.
    children = {
        "web": _spawn("web", "--host", host, "--port", str(port), "--quiet-start"),
        "worker": _spawn("worker", "--concurrency", str(concurrency), "--quiet-start"),
        "scheduler": _spawn("scheduler", "--quiet-start"),
    }
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - only for display
    storages = ", ".join(f"{s.name} → {s.storage_type}:{s.bucket}" for s in settings.archive.effective_storages())
    console.print(f"archiving to: {storages}")
    console.print(f"webhook URL to give Stream: [bold]http://{shown_host}:{port}{paths.WEBHOOK}[/] "
                  "(behind your public HTTPS address)")
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                console.print(f"[bold red]{name} exited with {child.returncode}; stopping[/]")
                exit_code, stopping = child.returncode or 1, True
        time.sleep(0.5)
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children.values():
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
    if redis_process is not None:
        redis_process.send_signal(signal.SIGTERM)
        redis_process.wait(timeout=10)
    return exit_code
