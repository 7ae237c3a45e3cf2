"""The tasks: thin adapters from Celery messages to `worker.edge.jobs`. Safe to deliver many times."""

from __future__ import annotations

import structlog
from celery import signals

from config.celery import NOTIFY_TASK_OPTIONS, ROUTE_TASK_OPTIONS, TRANSFER_TASK_OPTIONS
from tasks.app import NOTIFY_TASK, ROUTE_TASK, TRANSFER_TASK, app, enqueue, settings
from worker.edge.jobs import Jobs

jobs = Jobs(settings)


@signals.worker_process_shutdown.connect
def _close_runtime(**_: object) -> None:
    jobs.close()


@signals.task_postrun.connect
def _forget_bound_ids(**_: object) -> None:
    """A task's log context (call and transfer ids) ends with it, whichever task it was."""
    structlog.contextvars.clear_contextvars()


@app.task(name=TRANSFER_TASK, **TRANSFER_TASK_OPTIONS)
def archive_transfer(transfer_id: str) -> None:
    """Run one transfer if it is due and not running elsewhere. Safe to deliver many times (a
    redelivery after the visibility timeout finds the lease live and does nothing). No time limit:
    the lease guards it."""
    enqueue(jobs.archive_transfer(transfer_id))


@app.task(name=ROUTE_TASK, **ROUTE_TASK_OPTIONS)
def route_file(file_id: str) -> None:
    """Find a file's destinations (call-level routing) and queue its transfers."""
    enqueue(jobs.route_file(file_id))


@app.task(name=NOTIFY_TASK, **NOTIFY_TASK_OPTIONS)
def deliver_notification(delivery_id: str) -> None:
    """One attempt at a notification's delivery if it is due and no other worker is at it (a lease)."""
    jobs.deliver_notification(delivery_id)
