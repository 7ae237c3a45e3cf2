"""The tasks: thin adapters from Celery messages to `worker` functions. Safe to deliver many times."""

from __future__ import annotations

import structlog
from celery import signals

from config.celery import ROUTE_TASK_OPTIONS, TRANSFER_TASK_OPTIONS
from tasks.app import ROUTE_TASK, TRANSFER_TASK, app, enqueue, settings
from worker.intake import resolve_file
from worker.runtime import Runtime
from worker.transfer import run_transfer

_runtime: Runtime | None = None


def runtime() -> Runtime:
    """This process's runtime, built lazily (after the prefork pool forked)."""
    global _runtime
    if _runtime is None:
        _runtime = Runtime.from_settings(settings)
    return _runtime


@signals.worker_process_shutdown.connect
def _close_runtime(**_: object) -> None:
    if _runtime is not None:
        _runtime.close()


@app.task(name=TRANSFER_TASK, **TRANSFER_TASK_OPTIONS)
def archive_transfer(transfer_id: str) -> None:
    """Run one transfer if it is due and not running elsewhere. Safe to deliver many times (a
    redelivery after the visibility timeout finds the lease live and does nothing). No time limit:
    the lease guards it."""
    try:
        run_transfer(runtime(), transfer_id)
    finally:
        structlog.contextvars.clear_contextvars()


@app.task(name=ROUTE_TASK, **ROUTE_TASK_OPTIONS)
def route_file(file_id: str) -> None:
    """Find a file's destinations (call-level routing) and queue its transfers."""
    try:
        enqueue(resolve_file(runtime(), file_id))
    finally:
        structlog.contextvars.clear_contextvars()
