"""Celery settings (config/celery.py): Celery accepts misspelled options silently, so check them."""

from __future__ import annotations

from celery.app.defaults import NAMESPACES, flatten

from config.celery import VISIBILITY_TIMEOUT, celery_config

# Celery's Redis docs ask for the visibility timeout at the top level too, though it is not in
# Celery's table of defaults (shared/RELIABILITY.md §1.1).
DOCUMENTED_EXTRAS = {"visibility_timeout"}


def test_every_setting_is_one_celery_knows() -> None:
    known = {name for name, _ in flatten(NAMESPACES)}
    unknown = set(celery_config("redis://x")) - known - DOCUMENTED_EXTRAS
    assert unknown == set()


def test_long_transfer_settings() -> None:
    config = celery_config("redis://broker:6379/1")
    assert config["broker_url"] == "redis://broker:6379/1"
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1
    assert config["broker_transport_options"]["visibility_timeout"] == VISIBILITY_TIMEOUT
    assert VISIBILITY_TIMEOUT > config["task_time_limit"] > config["task_soft_time_limit"]
    assert config["task_ignore_result"] and "result_backend" not in config
