"""Celery settings (config/celery.py): Celery accepts misspelled options silently, so check them."""

from __future__ import annotations

from celery import Celery, Task
from celery.app.defaults import NAMESPACES, flatten

from config.celery import (
    NOTIFY_TASK_OPTIONS,
    ROUTE_TASK_OPTIONS,
    TRANSFER_TASK_OPTIONS,
    VISIBILITY_TIMEOUT,
    celery_config,
)

# Celery's Redis docs ask for the visibility timeout at the top level too, though it is not in
# Celery's table of defaults (shared/RELIABILITY.md §1.1).
DOCUMENTED_EXTRAS = {"visibility_timeout"}


def test_every_setting_is_one_celery_knows() -> None:
    known = {name for name, _ in flatten(NAMESPACES)}
    unknown = set(celery_config("redis://x")) - known - DOCUMENTED_EXTRAS
    assert unknown == set()


def test_every_task_option_is_one_celery_knows() -> None:
    for options in (TRANSFER_TASK_OPTIONS, ROUTE_TASK_OPTIONS, NOTIFY_TASK_OPTIONS):
        assert {name for name in options if not hasattr(Task, name)} == set()


def test_long_transfer_settings() -> None:
    config = celery_config("redis://broker:6379/1")
    assert config["broker_url"] == "redis://broker:6379/1"
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1
    assert config["broker_transport_options"]["visibility_timeout"] == VISIBILITY_TIMEOUT
    assert config["task_ignore_result"] and "result_backend" not in config


def test_no_time_limit_kills_a_transfer_that_still_renews_its_lease() -> None:
    """Neither a default limit nor one of the transfer task's own: the lease guards a transfer (a
    hung one stops renewing it, worker/ledger/lease.py). Routing a file keeps a hard limit."""
    app = Celery("check", set_as_current=False)
    app.config_from_object(celery_config("redis://broker:6379/1"))
    assert app.conf.task_time_limit is None and app.conf.task_soft_time_limit is None

    @app.task(name="transfer", shared=False, **TRANSFER_TASK_OPTIONS)
    def transfer() -> None: ...

    @app.task(name="route", shared=False, **ROUTE_TASK_OPTIONS)
    def route() -> None: ...

    assert transfer.time_limit is None and transfer.soft_time_limit is None
    assert route.time_limit == 15 * 60 and route.soft_time_limit is None
