"""Redis clients from URLs (worker/ledger/connection.py): a single Redis, or a master found through
Sentinel; against a real master, replica and Sentinel (tests/support/sentinel.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from config import ConfigError
from config.celery import celery_config
from tests.support.sentinel import SentinelSetup
from tests.unit.ledger.test_ledger import a_file, record
from worker.ledger.connection import connect, parse_sentinel_url
from worker.ledger.store import Ledger


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    with SentinelSetup(tmp_path_factory.mktemp("sentinel")) as setup:
        yield setup


@pytest.fixture
def ha_ledger(sentinel: SentinelSetup) -> Iterator[Ledger]:
    with sentinel.master() as master:
        master.flushall()
    client = connect(sentinel.url, sentinel_master=sentinel.master_name, name="archiver-test")
    yield Ledger(client)
    client.close()


def test_several_sentinels_with_the_masters_password_and_database() -> None:
    parsed = parse_sentinel_url("sentinel://:s%40cret@h1:26379/2;sentinel://:s%40cret@h2;sentinel://h3:26380")
    assert parsed.hosts == (("h1", 26379), ("h2", 26379), ("h3", 26380))
    assert (parsed.username, parsed.password, parsed.db) == (None, "s@cret", 2)


@pytest.mark.parametrize("url", ["sentinel://", "sentinel://h1:26379;redis://h2:6379", "sentinel://h1:port"])
def test_a_malformed_sentinel_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_sentinel_url(url)


def test_a_sentinel_url_without_a_master_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="REDIS_SENTINEL_MASTER"):
        connect("sentinel://127.0.0.1:26379")


def test_settings_need_redis_sentinel_master_with_a_sentinel_url(make_settings: Any) -> None:
    with pytest.raises(ConfigError, match="REDIS_SENTINEL_MASTER"):
        make_settings(env={"REDIS_URL": "sentinel://h1:26379"})
    with pytest.raises(ConfigError, match="REDIS_SENTINEL_MASTER"):
        make_settings(env={"ARCHIVER_BROKER_URL": "sentinel://h1:26379;sentinel://h2:26379"})
    settings = make_settings(env={"REDIS_URL": "sentinel://:pw1@h1:26379;sentinel://:pw1@h2:26379",
                                  "REDIS_SENTINEL_MASTER": "mymaster", "REDIS_SENTINEL_PASSWORD": "pw2"})
    assert settings.env.redis_sentinel_master == "mymaster"
    assert {"pw1", "pw2"} <= set(settings.secrets()), "both passwords are scrubbed from logs"
    assert "pw2" not in repr(settings.env)


def test_celery_gets_kombus_sentinel_transport_options() -> None:
    config = celery_config("sentinel://h1:26379;sentinel://h2:26379", sentinel_master="mymaster",
                           sentinel_password="pw")
    transport = config["broker_transport_options"]
    assert config["broker_url"] == "sentinel://h1:26379;sentinel://h2:26379"
    assert transport["master_name"] == "mymaster"
    assert transport["sentinel_kwargs"]["password"] == "pw"
    assert "master_name" not in celery_config("redis://h:6379/0")["broker_transport_options"]


def test_the_ledger_records_claims_and_finishes_through_sentinel(ha_ledger: Ledger, sentinel: SentinelSetup) -> None:
    tid = record(ha_ledger, a_file())
    claim = ha_ledger.claim(tid, "w1", 60_000)
    assert claim.claimed
    assert ha_ledger.finish(tid, claim.token, "archived", bytes=3)
    with sentinel.master() as master:
        assert master.hget(f"archiver:transfer:{tid}", "state") == "archived", "written to the master"


def test_an_unreachable_sentinel_in_the_list_is_skipped(sentinel: SentinelSetup) -> None:
    url = f"sentinel://127.0.0.1:1;{sentinel.url}"
    client = connect(url, sentinel_master=sentinel.master_name, fail_fast=True)
    assert client.ping()
    client.close()


def test_an_unknown_master_name_fails_with_a_redis_error(sentinel: SentinelSetup) -> None:
    client = connect(sentinel.url, sentinel_master="no-such-master", fail_fast=True)
    with pytest.raises(redis.RedisError):
        client.ping()


def test_the_ledger_keeps_working_after_a_failover(tmp_path: Path) -> None:
    with SentinelSetup(tmp_path) as setup:
        ledger = Ledger(connect(setup.url, sentinel_master=setup.master_name))
        first = record(ledger, a_file("rec_default_x_1.mp4"))
        claim = ledger.claim(first, "w1", 60_000)
        with setup.master() as master:
            master.execute_command("WAIT", 1, 2000)  # the replica has it before the roles swap
        old_port = setup.master_port()
        new_port = setup.failover()
        assert new_port != old_port
        assert ledger.finish(first, claim.token, "archived", bytes=1), "the claim made before survives"
        second = record(ledger, a_file("rec_default_x_2.mp4"))
        assert ledger.claim(second, "w1", 60_000).claimed
        with redis.Redis(port=new_port, decode_responses=True) as master:
            assert master.hget(f"archiver:transfer:{first}", "state") == "archived"
            assert master.hget(f"archiver:transfer:{second}", "state") == "transferring"
        ledger.redis.close()
