"""One way from a URL to a Redis client: a single Redis, or the master a set of Sentinels names.

URLs::

    redis://[[user]:password@]host:port/db          a single Redis (also rediss://, unix://)
    sentinel://[[user]:password@]host:26379[/db]    Sentinels; several joined by ';', as kombu takes
                                                    them: sentinel://h1:26379;sentinel://h2:26379

With ``sentinel://`` the master is the one named by REDIS_SENTINEL_MASTER; the URL's user and
password are the master's (as kombu uses them), the Sentinels' own password, if they have one,
is REDIS_SENTINEL_PASSWORD. After a failover the next command finds the new master: a connection
that breaks, or that finds its server demoted to a replica, is reopened (through the Sentinels) and
the command retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from config import ConfigError, LedgerEnvironment

SENTINEL_SCHEME = "sentinel"


def is_sentinel(url: str) -> bool:
    return url.strip().lower().startswith(f"{SENTINEL_SCHEME}://")


@dataclass(frozen=True)
class SentinelUrl:
    """What a ``sentinel://`` URL (one or several, joined by ';') says."""

    hosts: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    db: int = 0


def parse_sentinel_url(url: str) -> SentinelUrl:
    """The Sentinels' addresses, and the master's credentials and database, of a ``sentinel://`` URL.

    Raises ConfigError when a part is not a ``sentinel://host[:port]`` address."""
    hosts: list[tuple[str, int]] = []
    username = password = None
    db = 0
    for part in filter(None, (p.strip() for p in url.split(";"))):
        parts = urlsplit(part)
        if parts.scheme != SENTINEL_SCHEME or not parts.hostname:
            raise ConfigError(f"not a sentinel://host:port address: {parts.scheme}://{parts.hostname or ''}…")
        try:
            hosts.append((parts.hostname, parts.port or 26379))
            if parts.path.strip("/"):
                db = int(parts.path.strip("/"))
        except ValueError:
            raise ConfigError(f"sentinel URL {parts.hostname}: bad port or database number") from None
        username = username or (unquote(parts.username) if parts.username else None)
        password = password or (unquote(parts.password) if parts.password else None)
    if not hosts:
        raise ConfigError("a sentinel:// URL names no Sentinel")
    return SentinelUrl(tuple(hosts), username, password, db)


def connect(url: str, *, fail_fast: bool = False, name: str = "archiver", sentinel_master: str | None = None,
            sentinel_password: str | None = None) -> redis.Redis:
    """A Redis client with timeouts and retries; `fail_fast` (the web receiver) gives up within ~2 s.

    A ``sentinel://`` URL needs `sentinel_master` (else ConfigError); no I/O happens here."""
    retries, connect_timeout = (1, 1.0) if fail_fast else (5, 5.0)
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": 5.0,
        "socket_connect_timeout": connect_timeout,
        "socket_keepalive": True,
        "health_check_interval": 30,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
        "client_name": name,
    }
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **options)
    if not sentinel_master:
        raise ConfigError("REDIS_SENTINEL_MASTER must name the master the Sentinels watch (a sentinel:// URL is used)")
    where = parse_sentinel_url(url)
    # Each Sentinel is asked once per lookup (the next one is tried at once); the master's own
    # retries above repeat the whole lookup.
    sentinel_options: dict[str, Any] = {"socket_timeout": connect_timeout, "socket_connect_timeout": connect_timeout,
                                        "retry": Retry(NoBackoff(), 0)}
    if sentinel_password:
        sentinel_options["password"] = sentinel_password
    sentinels = Sentinel(list(where.hosts), sentinel_kwargs=sentinel_options, db=where.db,
                         username=where.username, password=where.password, **options)
    master = sentinels.master_for(sentinel_master, redis_class=redis.Redis)  # unannotated return: Any
    return cast(redis.Redis, master)


def connect_env(env: LedgerEnvironment, *, fail_fast: bool = False, name: str = "archiver") -> redis.Redis:
    """The ledger's Redis (REDIS_URL, with REDIS_SENTINEL_MASTER when it is a sentinel:// URL)."""
    password = env.redis_sentinel_password.get_secret_value() if env.redis_sentinel_password else None
    return connect(env.redis_url, fail_fast=fail_fast, name=name, sentinel_master=env.redis_sentinel_master,
                   sentinel_password=password)
