"""The transfer task: a thin adapter from a Celery message to `worker.transfer.run_transfer`."""

from __future__ import annotations

import structlog
from celery import signals

from tasks.app import TRANSFER_TASK, app, settings
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


@app.task(name=TRANSFER_TASK, ignore_result=True)
def archive_transfer(transfer_id: str) -> None:
    """Run one transfer if it is due and not running elsewhere. Safe to deliver many times."""
    try:
        run_transfer(runtime(), transfer_id)
    finally:
        structlog.contextvars.clear_contextvars()
