"""The ledger's schema version (worker/ledger/schema.py): set, accepted, migrated, or refused."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis

from tests.support.ledger_states import add, run_cli, run_clis
from worker.errors import LedgerSchemaError
from worker.ledger.schema import SCHEMA_VERSION, ensure_schema, ledger_version
from worker.ledger.store import Ledger


def test_a_ledger_from_before_versioning_is_version_1_migrated_and_keeps_its_data(ledger: Ledger) -> None:
    ids = add(ledger, "a1", "archived") + add(ledger, "q1")
    ledger.redis.delete(*ledger.redis.scan_iter("archiver:index:*"))  # as versions before the index left it
    assert ledger_version(ledger) is None
    assert ensure_schema(ledger) == SCHEMA_VERSION == 2
    assert ledger.redis.get("archiver:schema_version") == "2"
    assert sorted(ledger.ids()) == sorted(ids)
    assert ledger.redis.zcard("archiver:index:type:default") == 2  # migration 1 → 2: the index of `find`


def test_the_current_version_is_accepted_as_it_is(ledger: Ledger) -> None:
    ledger.redis.set("archiver:schema_version", SCHEMA_VERSION)
    assert ensure_schema(ledger) == SCHEMA_VERSION


def test_an_older_ledger_is_migrated_step_by_step_in_order(ledger: Ledger) -> None:
    steps: list[int] = []

    def to_2(target: Ledger) -> None:
        steps.append(1)
        target.redis.set("archiver:migrated_to_2", "yes")

    def to_3(target: Ledger) -> None:
        steps.append(2)
        assert target.redis.get("archiver:schema_version") == "2"  # the first step is recorded before the next

    assert ensure_schema(ledger, supported=3, migrations={2: to_3, 1: to_2}) == 3
    assert steps == [1, 2] and ledger.redis.get("archiver:schema_version") == "3"
    assert ledger.redis.get("archiver:migrated_to_2") == "yes"
    assert ensure_schema(ledger, supported=3, migrations={2: to_3, 1: to_2}) == 3
    assert steps == [1, 2]  # nothing runs twice
    assert not ledger.redis.exists("archiver:schema_migration_lock")


def test_a_failed_migration_leaves_the_version_where_it_was(ledger: Ledger) -> None:
    def broken(_: Ledger) -> None:
        raise RuntimeError("disk on fire")

    with pytest.raises(LedgerSchemaError, match="from schema version 1 to 2 failed: disk on fire"):
        ensure_schema(ledger, supported=2, migrations={1: broken})
    assert ledger.redis.get("archiver:schema_version") == "1"
    assert not ledger.redis.exists("archiver:schema_migration_lock")


def test_an_older_ledger_without_a_known_migration_is_refused(ledger: Ledger) -> None:
    with pytest.raises(LedgerSchemaError, match="no migration from version 1"):
        ensure_schema(ledger, supported=2, migrations={})
    assert ledger.redis.get("archiver:schema_version") == "1"


@pytest.mark.parametrize("stored", ["3", "abc", "0", "-1", "1.5"])
def test_a_newer_or_unknown_version_is_refused_and_left_alone(ledger: Ledger, stored: str) -> None:
    ledger.redis.set("archiver:schema_version", stored)
    with pytest.raises(LedgerSchemaError) as raised:
        ensure_schema(ledger)
    assert raised.value.found == stored and raised.value.supported == SCHEMA_VERSION
    assert ledger.redis.get("archiver:schema_version") == stored


def test_a_process_waits_for_the_migration_another_one_is_running(ledger: Ledger) -> None:
    ledger.redis.set("archiver:schema_migration_lock", "someone-else")

    def finish_it() -> None:
        time.sleep(0.6)
        ledger.redis.set("archiver:schema_version", 2)

    other = threading.Thread(target=finish_it)
    other.start()
    assert ensure_schema(ledger, supported=2, migrations={1: lambda _: None}, wait_s=10) == 2
    other.join()


SERVICE_COMMANDS = (["web", "--port", "9"], ["worker"], ["scheduler"], ["serve", "--port", "9"],
                    ["sqs", "--queue-url", "http://127.0.0.1:9/q"], ["delete-archived", "--dry-run"],
                    ["backfill", "--since", "1d"], ["reconcile"])
TRANSFER_COMMANDS = (["transfers", "list"], ["transfers", "show", "t_x"], ["transfers", "export"],
                     ["transfers", "prune", "--older-than", "90d"], ["transfers", "retry", "--state", "failed"],
                     ["find", "--call", "default:x"])


def test_the_cli_refuses_a_newer_ledger_with_exit_2_naming_both_versions(ledger: Ledger, redis_url: str,
                                                                         tmp_path: Path) -> None:
    """Every process stops before it starts anything: no server, no worker, no call to Stream."""
    ledger.redis.set("archiver:schema_version", "7")
    commands = SERVICE_COMMANDS + TRANSFER_COMMANDS
    for command, result in zip(commands, run_clis(redis_url, commands, cwd=tmp_path), strict=True):
        assert result.returncode == 2, (command, result.stderr)
        assert "schema version 7" in result.stderr and f"supports ledger schema version {SCHEMA_VERSION}" in \
            result.stderr, command
    assert ledger.redis.get("archiver:schema_version") == "7"


def test_the_cli_writes_the_version_of_a_ledger_from_before_versioning(ledger: Ledger, redis_url: str) -> None:
    add(ledger, "a1", "archived")
    result = run_cli(redis_url, "transfers", "list", "--json")
    assert result.returncode == 0, result.stderr
    assert ledger.redis.get("archiver:schema_version") == str(SCHEMA_VERSION)


def test_checking_a_versioned_ledger_writes_nothing(ledger: Ledger, redis_url: str) -> None:
    """A connection allowed only to read (an ACL user here) can check a ledger that has its version."""
    ledger.redis.set("archiver:schema_version", SCHEMA_VERSION)
    ledger.redis.acl_setuser("reader", enabled=True, passwords=["+reader-pw"], keys=["*"],
                             commands=["+@read", "+@connection"])
    reader = redis.Redis.from_url(redis_url.replace("redis://", "redis://reader:reader-pw@"), decode_responses=True)
    try:
        assert ensure_schema(Ledger(reader)) == SCHEMA_VERSION
        reader_ledger = Ledger(reader)
        ledger.redis.delete("archiver:schema_version")
        with pytest.raises(redis.exceptions.NoPermissionError):
            ensure_schema(reader_ledger)  # without a version it must write one
    finally:
        reader.close()
        ledger.redis.acl_deluser("reader")
