"""The ledger's Redis persistence check (worker/ledger/persistence.py), against real redis-servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from structlog.testing import capture_logs

from tests.support.redis import RedisServer
from worker.ledger.connection import connect
from worker.ledger.persistence import fitness_line, persistence_problems, persistence_warnings, warn_about_persistence


@pytest.fixture(scope="module")
def aof_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-aof"), appendonly=True).start()
    yield server
    server.stop()


def test_a_redis_with_aof_and_noeviction_raises_no_warning(aof_server: RedisServer) -> None:
    client = aof_server.client()
    assert persistence_warnings(client) == []
    with capture_logs() as logs:
        warn_about_persistence(client, "worker")
    assert logs == []


def test_a_redis_without_aof_is_warned_about_with_setting_value_and_recommendation(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    (problem,) = persistence_problems(client)
    assert (problem.setting, problem.value, problem.recommended) == ("appendonly", "no", "yes")
    with capture_logs() as logs:
        warn_about_persistence(client, "web")
    (line,) = logs
    assert line["event"] == "redis_config_warning" and line["log_level"] == "warning"
    assert (line["setting"], line["value"], line["recommended"], line["component"]) == (
        "appendonly", "no", "yes", "web")


def test_eviction_and_a_lazy_fsync_are_warned_about(aof_server: RedisServer) -> None:
    client = aof_server.client()
    client.config_set("maxmemory-policy", "allkeys-lru")
    client.config_set("appendfsync", "no")
    try:
        found = {(p.setting, p.value, p.recommended) for p in persistence_problems(client)}
    finally:
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("appendfsync", "everysec")
    assert found == {("maxmemory-policy", "allkeys-lru", "noeviction"), ("appendfsync", "no", "always")}


def test_a_refused_config_command_is_reported_as_unchecked_never_raised(redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url, decode_responses=True)
    admin.acl_setuser("managed", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"],
                      commands=["+@all", "-config"])
    client = redis.Redis.from_url(redis_url.replace("redis://", "redis://managed:pw@"), decode_responses=True)
    try:
        (warning,) = persistence_warnings(client)
        assert warning.startswith("could not check the Redis persistence settings")
        with capture_logs() as logs:
            warn_about_persistence(client, "scheduler")
        assert [line["event"] for line in logs] == ["redis_config_unchecked"]
    finally:
        admin.acl_deluser("managed")


def test_an_unreachable_redis_is_reported_as_unchecked() -> None:
    client = connect("redis://127.0.0.1:1/0", fail_fast=True)
    with capture_logs() as logs:
        warn_about_persistence(client, "worker")
    assert [line["event"] for line in logs] == ["redis_config_unchecked"]


def test_a_redis_not_started_by_serve_is_named_in_one_line_with_its_db_and_fitness(
        redis_url: str, aof_server: RedisServer) -> None:
    """`archiver serve` on a Redis already running says which one, which db, and whether its
    persistence is fit for the ledger, never the password."""
    unfit_url = redis_url.rstrip("/").rsplit("/", 1)[0].replace("redis://", "redis://:hunter2@") + "/3"
    unfit = fitness_line(redis.Redis.from_url(redis_url), unfit_url)
    address = unfit_url.split("@")[1].split("/")[0]
    assert unfit.startswith(f"using the Redis at {address}, db 3 ")
    assert "NOT fit for the ledger: appendonly is 'no'" in unfit and "REDIS_URL" in unfit
    assert "hunter2" not in unfit and "\n" not in unfit
    fit = fitness_line(aof_server.client(), aof_server.url)
    assert "persistence fit for the ledger" in fit and ", db 0 " in fit
