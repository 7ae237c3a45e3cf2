"""`verify_log` (worker/auditlog/verify.py) on a real log, exported to local disk: intact when untouched;
the first broken or missing entry named (seq, object, line) after a line is altered or removed, an
object removed (with or without its record), or the entries in Redis touched; `since` anchors later."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.unit.auditlog.conftest import note_many
from worker.auditlog.canonical import entry_hash
from worker.auditlog.chain import chain_pending
from worker.auditlog.export import Export, export_log
from worker.auditlog.verify import REDIS, Verification, verify_log
from worker.clock import from_ms
from worker.ledger.store import Ledger
from worker.storage.local.storage import LocalStorage


@pytest.fixture
def log(ledger: Ledger, disk: LocalStorage) -> tuple[Export, Export]:
    """Two exports of 3 entries each, 2 entries chained in Redis, 1 noted and not chained."""
    note_many(ledger, 3)
    (first,) = export_log(ledger, disk)
    time.sleep(0.01)  # the second export planned at a later ms than the first (`since`)
    note_many(ledger, 3, start=3)
    (second,) = export_log(ledger, disk)
    note_many(ledger, 2, start=6)
    chain_pending(ledger)
    note_many(ledger, 1, start=8)
    return first, second


def path(disk: LocalStorage, export: Export) -> Path:
    return disk.root / export.key


def edit_line(disk: LocalStorage, export: Export, number: int, change: dict[str, object] | None) -> None:
    """Replace line `number` (1-based) with its entry updated by `change`, or remove it (None)."""
    lines = path(disk, export).read_text().splitlines()
    if change is None:
        del lines[number - 1]
    else:
        lines[number - 1] = json.dumps({**json.loads(lines[number - 1]), **change}, sort_keys=True,
                                       separators=(",", ":"))
    path(disk, export).write_text("".join(line + "\n" for line in lines))


def broken(report: Verification) -> tuple[int | None, str, int | None]:
    assert report.broken is not None, "the chain was found intact"
    return report.broken.seq, report.broken.where, report.broken.line


def test_an_untouched_log_is_intact_with_its_counts(ledger: Ledger, disk: LocalStorage,
                                                    log: tuple[Export, Export]) -> None:
    report = verify_log(ledger, disk)
    assert report.intact, report.broken
    assert (report.objects, report.entries, report.in_redis, report.pending) == (2, 8, 2, 1)
    assert (report.first_seq, report.last_seq, report.anchor) == (1, 8, None)
    assert report.first_at is not None and report.last_at is not None and report.first_at <= report.last_at


def test_an_empty_log_is_intact(ledger: Ledger, disk: LocalStorage) -> None:
    report = verify_log(ledger, disk)
    assert report.intact and report.entries == 0 and report.first_seq is None


def test_an_altered_line_is_named(ledger: Ledger, disk: LocalStorage, log: tuple[Export, Export]) -> None:
    first, _ = log
    edit_line(disk, first, 2, {"reason": "nothing to see"})
    assert broken(verify_log(ledger, disk)) == (2, first.key, 2)
    assert "altered" in (verify_log(ledger, disk).broken or pytest.fail()).problem


def test_an_altered_line_with_its_hash_made_again_breaks_the_next_link(ledger: Ledger, disk: LocalStorage,
                                                                        log: tuple[Export, Export]) -> None:
    first, _ = log
    entry = {**json.loads(path(disk, first).read_text().splitlines()[1]), "reason": "rewritten"}
    edit_line(disk, first, 2, {"reason": "rewritten", "hash": entry_hash(entry)})
    report = verify_log(ledger, disk)
    assert broken(report) == (3, first.key, 3) and "prev" in (report.broken or pytest.fail()).problem


def test_a_removed_line_names_the_missing_entry(ledger: Ledger, disk: LocalStorage,
                                                log: tuple[Export, Export]) -> None:
    first, _ = log
    edit_line(disk, first, 2, None)
    report = verify_log(ledger, disk)
    assert broken(report) == (2, first.key, 2) and "missing" in (report.broken or pytest.fail()).problem


def test_a_removed_last_line_names_the_missing_entry(ledger: Ledger, disk: LocalStorage,
                                                     log: tuple[Export, Export]) -> None:
    _, second = log
    edit_line(disk, second, 3, None)
    report = verify_log(ledger, disk)
    assert broken(report) == (6, second.key, 3)
    assert "ends at seq 5" in (report.broken or pytest.fail()).problem


def test_a_removed_object_is_named(ledger: Ledger, disk: LocalStorage, log: tuple[Export, Export]) -> None:
    first, _ = log
    path(disk, first).unlink()
    report = verify_log(ledger, disk)
    assert broken(report) == (1, first.key, None) and "gone" in (report.broken or pytest.fail()).problem


def test_an_object_removed_with_its_record_leaves_a_gap_that_is_named(ledger: Ledger, disk: LocalStorage,
                                                                      log: tuple[Export, Export]) -> None:
    first, second = log
    path(disk, first).unlink()
    ledger.redis.zrem(ledger.keys.auditlog_exports, first.record())
    report = verify_log(ledger, disk)
    assert broken(report) == (1, second.key, None)
    assert "no export holds seq 1-3" in (report.broken or pytest.fail()).problem


def test_the_last_object_removed_with_its_record_is_named_by_what_follows(ledger: Ledger, disk: LocalStorage,
                                                                          log: tuple[Export, Export]) -> None:
    _, second = log
    path(disk, second).unlink()
    ledger.redis.zrem(ledger.keys.auditlog_exports, second.record())
    assert broken(verify_log(ledger, disk)) == (4, REDIS, 1)
    ledger.redis.delete(ledger.keys.auditlog_chain)  # and the entries not exported yet too: the head says
    report = verify_log(ledger, disk)
    assert broken(report)[0] == 4 and "reached seq 8" in (report.broken or pytest.fail()).problem


def test_an_entry_altered_in_redis_is_named(ledger: Ledger, disk: LocalStorage, log: tuple[Export, Export]) -> None:
    chain = ledger.keys.auditlog_chain
    entry = json.loads(ledger.redis.lindex(chain, 1))
    ledger.redis.lset(chain, 1, json.dumps({**entry, "actor": "nobody"}, sort_keys=True, separators=(",", ":")))
    assert broken(verify_log(ledger, disk)) == (8, REDIS, 2)


def test_a_line_rewritten_in_another_form_is_named_though_its_fields_are_the_same(
        ledger: Ledger, disk: LocalStorage, log: tuple[Export, Export]) -> None:
    first, _ = log
    lines = path(disk, first).read_text().splitlines()
    lines[0] = json.dumps(json.loads(lines[0]))  # spaces after the separators
    path(disk, first).write_text("".join(line + "\n" for line in lines))
    report = verify_log(ledger, disk)
    assert broken(report) == (1, first.key, 1) and "canonical" in (report.broken or pytest.fail()).problem


def test_bytes_added_after_the_last_line_are_named(ledger: Ledger, disk: LocalStorage,
                                                   log: tuple[Export, Export]) -> None:
    first, _ = log
    with path(disk, first).open("a") as stream:
        stream.write("\n")
    assert broken(verify_log(ledger, disk))[1] == first.key


def test_since_starts_at_the_first_export_at_or_after_it_trusting_its_prev(ledger: Ledger, disk: LocalStorage,
                                                                          log: tuple[Export, Export]) -> None:
    first, second = log
    edit_line(disk, first, 2, {"reason": "before the window"})
    since = from_ms(second.at)
    assert since is not None
    report = verify_log(ledger, disk, since=since)
    assert report.intact and (report.objects, report.entries, report.first_seq) == (1, 5, 4)
    assert report.anchor is not None and "seq 4" in report.anchor
    edit_line(disk, second, 1, {"reason": "inside the window"})
    assert broken(verify_log(ledger, disk, since=since)) == (4, second.key, 1)


def test_since_after_the_last_export_checks_the_entries_in_redis(ledger: Ledger, disk: LocalStorage,
                                                                 log: tuple[Export, Export]) -> None:
    _, second = log
    since = from_ms(second.at + 1)
    assert since is not None
    report = verify_log(ledger, disk, since=since)
    assert report.intact and (report.objects, report.entries, report.first_seq, report.last_seq) == (0, 2, 7, 8)
    assert report.anchor is not None and "seq 7" in report.anchor


def test_an_export_record_that_is_not_one_is_named(ledger: Ledger, disk: LocalStorage,
                                                   log: tuple[Export, Export]) -> None:
    ledger.redis.zadd(ledger.keys.auditlog_exports, {'{"key": "x"}': 7})
    report = verify_log(ledger, disk)
    assert broken(report) == (None, "redis (auditlog:exports)", None)
