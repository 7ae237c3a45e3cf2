"""Is the ledger's Redis set up to keep what it is told? Checked at start and by `archiver doctor`.

The ledger is the source of truth, so its Redis must write every change to its append-only file
(``appendonly yes``; ``appendfsync always`` or ``everysec``) and must never evict a key to make room
(``maxmemory-policy noeviction``). Managed services often refuse CONFIG: then the settings cannot be
checked from here, which is said, never treated as a failure. See docs/redis.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import redis
import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ConfigProblem:
    """One setting of the ledger's Redis that puts the ledger at risk."""

    setting: str
    value: str
    recommended: str
    risk: str

    @property
    def message(self) -> str:
        return f"{self.setting} is {self.value!r}: {self.risk}; set {self.setting} {self.recommended}"


class ConfigUnreadable(Exception):  # noqa: N818 - a fact, not a failure: the check could not be made
    """CONFIG GET was refused (managed Redis, ACL) or the Redis did not answer."""


# setting -> (recommended value, acceptable values, what goes wrong otherwise)
_RISKS: dict[str, tuple[str, frozenset[str], str]] = {
    "appendonly": ("yes", frozenset({"yes"}),
                   "a restart or crash loses the ledger's writes since the last snapshot"),
    "appendfsync": ("always", frozenset({"always", "everysec"}),
                    "the operating system decides when AOF writes reach the disk (up to ~30 s lost on a crash)"),
    "maxmemory-policy": ("noeviction", frozenset({"noeviction"}),
                         "Redis may evict ledger and queue keys when it is full"),
}


def persistence_problems(client: redis.Redis) -> list[ConfigProblem]:
    """The settings of `client`'s Redis that put the ledger at risk (none: all is well).

    Raises ConfigUnreadable when they cannot be read."""
    values: dict[str, str] = {}
    for setting in _RISKS:
        try:
            reply = client.config_get(setting)
        except redis.RedisError as exc:
            raise ConfigUnreadable(f"CONFIG GET {setting} failed: {exc}") from exc
        if setting not in reply:
            raise ConfigUnreadable(f"CONFIG GET {setting} gave no value")
        values[setting] = str(reply[setting])
    problems = []
    for setting, (recommended, acceptable, risk) in _RISKS.items():
        if setting == "appendfsync" and values["appendonly"] != "yes":
            continue  # only matters with AOF on; appendonly itself is reported
        if values[setting] not in acceptable:
            problems.append(ConfigProblem(setting, values[setting], recommended, risk))
    return problems


def persistence_warnings(client: redis.Redis) -> list[str]:
    """One sentence per problem; when the settings cannot be read, one sentence saying so."""
    try:
        return [p.message for p in persistence_problems(client)]
    except ConfigUnreadable as exc:
        return [f"could not check the Redis persistence settings ({exc}); make sure it runs with "
                "appendonly yes and maxmemory-policy noeviction"]


def warn_about_persistence(client: redis.Redis, component: str) -> None:
    """Log a `redis_config_warning` per problem (or `redis_config_unchecked`); never raises."""
    try:
        problems = persistence_problems(client)
    except ConfigUnreadable as exc:
        log.warning("redis_config_unchecked", component=component, reason=str(exc),
                    recommended="appendonly yes, maxmemory-policy noeviction", docs="docs/redis.md")
        return
    except Exception as exc:  # noqa: BLE001 - a start-up check must never stop the service
        log.warning("redis_config_unchecked", component=component, reason=str(exc), docs="docs/redis.md")
        return
    for problem in problems:
        log.warning("redis_config_warning", component=component, setting=problem.setting, value=problem.value,
                    recommended=problem.recommended, risk=problem.risk, docs="docs/redis.md")


def where(url: str) -> tuple[str, int]:
    """`host:port` and db number of a redis:// URL, without its password (for people to read)."""
    parts = urlsplit(url)
    db = parts.path.strip("/") or "0"
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}", int(db) if db.isdigit() else 0


def fitness_line(client: redis.Redis, url: str) -> str:
    """One line for a person starting the service on a Redis it did not start: which one, which db,
    and whether its persistence is fit for the ledger (and where to point REDIS_URL otherwise)."""
    address, db = where(url)
    said = f"using the Redis at {address}, db {db} (already running; REDIS_URL chooses another)"
    try:
        problems = persistence_problems(client)
    except ConfigUnreadable:
        return f"{said}: its persistence settings cannot be read; the ledger needs appendonly yes and " \
               "maxmemory-policy noeviction (docs/redis.md)"
    if not problems:
        return f"{said}: persistence fit for the ledger (appendonly yes, maxmemory-policy noeviction)"
    faults = "; ".join(f"{p.setting} is {p.value!r}" for p in problems)
    return f"{said}: NOT fit for the ledger: {faults} (see docs/redis.md, or point REDIS_URL at another Redis)"
