"""`archiver doctor`: is everything the service depends on in order? Each finding says what is wrong."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import redis

from worker.errors import ArchiverError, StreamRefused, StreamUnavailable
from worker.ledger.persistence import ConfigUnreadable, persistence_problems
from worker.runtime import Runtime
from worker.storage.probe import check_storage


@dataclass(frozen=True)
class Finding:
    area: str
    ok: bool
    detail: str


def _stream(runtime: Runtime) -> Finding:
    where = runtime.settings.env.stream_base_url
    try:
        runtime.stream.query_calls({}, limit=1)
    except StreamRefused as exc:
        return Finding("stream", False, f"{where} refused the API key or secret: {exc}")
    except StreamUnavailable as exc:  # unreachable: its message says "cannot reach Stream's API at …: <cause>"
        return Finding("stream", False, str(exc) if exc.status == 0 else f"{where} failed: {exc}")
    return Finding("stream", True, f"{where} accepts STREAM_API_KEY and STREAM_API_SECRET")


def _redis(runtime: Runtime) -> Iterator[Finding]:
    client = runtime.ledger.redis
    try:
        client.ping()
    except redis.RedisError as exc:
        yield Finding("redis", False, f"unreachable (REDIS_URL): {exc}")
        return
    yield Finding("redis", True, "reachable")
    try:
        problems = {p.setting: p for p in persistence_problems(client)}
    except ConfigUnreadable as exc:
        yield Finding("redis persistence", False, f"cannot read its configuration ({exc}); check it is set up "
                                                  "with appendonly yes and maxmemory-policy noeviction")
        return
    rows = [("redis persistence", "appendonly", "appendonly yes"),
            ("redis eviction", "maxmemory-policy", "maxmemory-policy noeviction")]
    if "appendonly" not in problems:  # appendfsync only matters with AOF on
        rows.insert(1, ("redis fsync", "appendfsync", "appendfsync always or everysec"))
    for area, setting, good in rows:
        problem = problems.get(setting)
        yield Finding(area, problem is None, good if problem is None else problem.message)


def _storages(runtime: Runtime) -> Iterator[Finding]:
    for storage in runtime.archive.effective_storages():
        area = f"storage {storage.name}"
        try:
            report = check_storage(runtime.storage(storage.name), runtime.archive.transfer)
        except ArchiverError as exc:
            yield Finding(area, False, str(exc))
            continue
        detail = report.described if report.ok else f"{report.reason}: {report.message}"
        yield Finding(area, report.ok, detail)


def diagnose(runtime: Runtime) -> list[Finding]:
    """Stream's credentials (one cheap API call), Redis (reachable, persistent, no eviction), and each
    storage (the same round trip as `archiver storage check`)."""
    return [_stream(runtime), *_redis(runtime), *_storages(runtime)]
