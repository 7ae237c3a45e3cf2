"""Celery settings for long transfers on a Redis broker (see shared RELIABILITY.md §1).

The ledger decides what runs; the broker only carries hints. So: late acks and reject on worker
loss (a killed worker's message comes back), prefetch 1 (no hoarding), no result backend, and no
countdowns (waits live in the ledger).

No time limit on the transfer task: a limit would kill a long transfer that is still renewing its
lease, and its retry would start again from byte 0 (a 10 GB file slower than ~0.75 MB/s would never
finish under 4 h). The lease guards a transfer instead; a hung one stops renewing it (see
`worker.ledger.lease`) and is taken over. A transfer may so outlast the visibility timeout: its message is
then delivered once more (kombu#337), and that copy finds the lease live and does nothing.
"""

from __future__ import annotations

from typing import Any

from redis.backoff import NoBackoff
from redis.retry import Retry

VISIBILITY_TIMEOUT = 6 * 3600  # seconds; a longer transfer's message is delivered again, and ignored
ROUTE_TIME_LIMIT = 15 * 60  # seconds; routing a file is a few calls to Stream's API
TRANSFER_QUEUE = "archiver.transfers"
# Options of each task (`@app.task(**...)`), here so tests can check Celery knows every one.
TRANSFER_TASK_OPTIONS: dict[str, Any] = {"ignore_result": True}  # no time limit: the lease guards it
ROUTE_TASK_OPTIONS: dict[str, Any] = {"ignore_result": True, "time_limit": ROUTE_TIME_LIMIT}
# A notification's request ends within half its lease (`worker.notify.delivery`); the limit is a backstop.
NOTIFY_TASK_OPTIONS: dict[str, Any] = {"ignore_result": True, "time_limit": ROUTE_TIME_LIMIT}


def celery_config(broker_url: str, *, sentinel_master: str | None = None,
                  sentinel_password: str | None = None) -> dict[str, Any]:
    """The Celery configuration, as a plain dict (tests check every key is a real setting).

    A ``sentinel://`` broker URL (kombu: ``sentinel://h1:26379;sentinel://h2:26379``) needs
    `sentinel_master`, the master the Sentinels watch; `sentinel_password` is the Sentinels' own."""
    transport: dict[str, Any] = {
        "visibility_timeout": VISIBILITY_TIMEOUT,
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 1,
        "socket_timeout": 30,
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        "health_check_interval": 25,
        "max_retries": 3,
    }
    if broker_url.strip().lower().startswith("sentinel://"):
        transport["master_name"] = sentinel_master
        # Ask each Sentinel once per lookup (a Sentinel that is down is passed over at once);
        # redis-py's default would retry it with backoff on every new connection.
        sentinels: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 5, "retry": Retry(NoBackoff(), 0)}
        if sentinel_password:
            sentinels["password"] = sentinel_password
        transport["sentinel_kwargs"] = sentinels
    return {
        "broker_url": broker_url,
        "broker_transport_options": transport,
        "visibility_timeout": VISIBILITY_TIMEOUT,
        "result_backend_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT},
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "broker_pool_acquire_timeout": 5,
        "task_default_queue": TRANSFER_QUEUE,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_publish_retry": True,
        "task_publish_retry_policy": {
            "max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 2,
        },
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_soft_shutdown_timeout": 20.0,
        "worker_enable_soft_shutdown_on_idle": True,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        # KiB: a pool process past ~300 MiB (a transfer needs ~150) is replaced after its task, well
        # under the 512 MiB a Kubernetes worker pod is given (deploy/kubernetes/worker-deployment.yaml)
        "worker_max_memory_per_child": 300_000,
    }
