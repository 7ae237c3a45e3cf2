"""`archiver serve`: the whole service on one machine, as three supervised processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
from rich.console import Console

from config import Settings
from worker.edge.web import paths
from worker.ledger.localredis import reachable, start_local_redis
from worker.ledger.persistence import fitness_line

LOCAL_REDIS_DIR = Path(".archiver/redis")


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
