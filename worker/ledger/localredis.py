"""For `archiver serve` on one machine: start a local redis-server when none answers."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def reachable(url: str) -> bool:
    """Whether the Redis at `url` answers. A sentinel:// URL is never ours to start: it says True,
    and the service's parts report it if no master answers."""
    if urlsplit(url.split(";")[0]).scheme == "sentinel":
        return True
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def start_local_redis(url: str, data_dir: Path) -> subprocess.Popen[bytes]:
    """Start redis-server for `url` (a local one) with AOF persistence in `data_dir`."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or parts.hostname not in LOCAL_HOSTS:
        raise RuntimeError(f"Redis at {parts.hostname}:{parts.port} is unreachable, and it is not local")
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("Redis is unreachable and redis-server is not installed (apt-get install redis-server)")
    data_dir.mkdir(parents=True, exist_ok=True)
    port = parts.port or 6379
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir.resolve()),
               "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction",
               "--save", "3600 1 300 100", "--logfile", str((data_dir / "redis.log").resolve())]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if reachable(url):
            return process
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"redis-server did not start on port {port}; see {data_dir / 'redis.log'}")
