"""The Celery app, configured from the settings (read once, in the process that imports this)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery, signals

from config import Settings, load_settings
from config.celery import celery_config
from config.logging import configure_logging, register_secrets

TRANSFER_TASK = "archiver.archive_transfer"
ROUTE_TASK = "archiver.route_file"
NOTIFY_TASK = "archiver.deliver_notification"


def create_celery(settings: Settings) -> Celery:
    app = Celery("archiver", include=["tasks.transfers"])
    env = settings.env
    password = env.redis_sentinel_password.get_secret_value() if env.redis_sentinel_password else None
    app.config_from_object(celery_config(settings.broker_url, sentinel_master=env.redis_sentinel_master,
                                         sentinel_password=password))
    return app


settings = load_settings()
register_secrets(settings.secrets())
app = create_celery(settings)


@signals.setup_logging.connect
def _use_our_logging(**_: Any) -> None:
    """Celery must not configure logging itself: ours scrubs URLs and secrets."""
    configure_logging(settings.env.archiver_log_level, settings.env.archiver_log_format)


def enqueue(ids: Sequence[str]) -> None:
    """Hand transfers (``t_…``), files waiting for their routes (``f_…``) and notifications'
    deliveries (``ev_…``) to the workers. Best effort: the ledger sweep catches what is lost."""
    for ledger_id in ids:
        task = TRANSFER_TASK
        if ledger_id.startswith(("f_", "ev_")):
            task = ROUTE_TASK if ledger_id.startswith("f_") else NOTIFY_TASK
        app.send_task(task, args=[ledger_id])
