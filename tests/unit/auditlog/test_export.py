"""Exports (worker/auditlog/export.py) into real storages: a new create-only object per export, none when
nothing is new, trimmed from Redis only once written and read back; a crash between the steps redoes
the same export; exporters running at once export each entry once."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import redis

from tests.support.moto import s3_storage
from tests.unit.auditlog.conftest import exported_lines, note_many
from tests.unit.auditlog.test_chain import assert_linked
from worker.auditlog.chain import Head, chain_pending, chained
from worker.auditlog.export import DONE, Export, _plan, _write, export_key, export_log
from worker.errors import AuditLogError
from worker.ledger.store import Ledger
from worker.storage.local.storage import LocalStorage


def records(ledger: Ledger) -> list[Export]:
    return [Export.from_record(r) for r in ledger.redis.zrange(ledger.keys.auditlog_exports, 0, -1)]


def test_an_export_writes_every_entry_as_a_new_object_then_trims_redis(ledger: Ledger, disk: LocalStorage) -> None:
    note_many(ledger, 3)
    (export,) = export_log(ledger, disk)
    assert (export.first, export.last, export.entries) == (1, 3, 3)
    assert export.key == export_key(1, 3, export.at)
    assert export.key.startswith("audit-log/") and export.key.endswith("/000000000001-000000000003.jsonl")
    lines = exported_lines(disk, export.key)
    assert [e["call_cid"] for e in lines] == ["default:c0", "default:c1", "default:c2"]
    assert_linked(lines)
    assert chained(ledger) == [] and ledger.redis.llen(ledger.keys.auditlog_pending) == 0
    head = Head.read(ledger)
    assert (head.seq, head.exported_seq, head.exported_hash, head.exported_key) == (3, 3, lines[-1]["hash"],
                                                                                    export.key)
    assert head.exporting is None and records(ledger) == [export]
    assert disk.verify(export.key, export.bytes, export.sha256) is None


def test_nothing_new_writes_nothing_and_the_next_export_goes_on_from_the_last(ledger: Ledger,
                                                                               disk: LocalStorage) -> None:
    note_many(ledger, 2)
    (first,) = export_log(ledger, disk)
    assert export_log(ledger, disk) == []
    assert len(list((disk.root / "audit-log").rglob("*.jsonl"))) == 1
    note_many(ledger, 2, start=2)
    (second,) = export_log(ledger, disk)
    assert (second.first, second.last) == (3, 4) and second.key != first.key
    lines = exported_lines(disk, first.key) + exported_lines(disk, second.key)
    assert_linked(lines)
    assert records(ledger) == [first, second]


def test_a_large_backlog_goes_out_as_several_objects(ledger: Ledger, disk: LocalStorage) -> None:
    note_many(ledger, 7)
    exports = export_log(ledger, disk, max_entries=3)
    assert [(e.first, e.last) for e in exports] == [(1, 3), (4, 6), (7, 7)]
    assert_linked([line for e in exports for line in exported_lines(disk, e.key)])


def test_a_key_holding_other_bytes_is_never_written_over(ledger: Ledger, disk: LocalStorage) -> None:
    """An object of an earlier ledger at the planned key stays; the export goes to <key>.2.jsonl."""
    note_many(ledger, 2)
    chain_pending(ledger)
    plan = _plan(ledger, Head.read(ledger), 100)
    assert isinstance(plan, str)
    taken = disk.root / json.loads(plan)["key"]
    taken.parent.mkdir(parents=True)
    taken.write_text("someone else's log\n")
    (export,) = export_log(ledger, disk)
    assert export.key == json.loads(plan)["key"].removesuffix(".jsonl") + ".2.jsonl"
    assert taken.read_text() == "someone else's log\n"
    assert [e["seq"] for e in exported_lines(disk, export.key)] == [1, 2]


def test_a_crash_after_the_write_redoes_the_same_export_without_a_second_object(ledger: Ledger,
                                                                                 disk: LocalStorage) -> None:
    """Planned and written, then the process died before recording it: the next export finds the
    plan, the same object already there, and records it; entries noted meanwhile go out next."""
    note_many(ledger, 3)
    chain_pending(ledger)
    plan = _plan(ledger, Head.read(ledger), 100)
    assert isinstance(plan, str)
    body = ("\n".join(ledger.redis.lrange(ledger.keys.auditlog_chain, 0, -1)) + "\n").encode()
    written, _ = _write(disk, json.loads(plan)["key"], body)
    note_many(ledger, 2, start=3)  # noted after the crash
    first, second = export_log(ledger, disk)
    assert first.key == written and (first.first, first.last) == (1, 3)
    assert (second.first, second.last) == (4, 5)
    assert sorted(p.name for p in (disk.root / "audit-log").rglob("*.jsonl")) == [
        "000000000001-000000000003.jsonl", "000000000004-000000000005.jsonl"]
    assert_linked(exported_lines(disk, first.key) + exported_lines(disk, second.key))


def test_a_crash_after_the_plan_writes_what_was_planned(ledger: Ledger, disk: LocalStorage) -> None:
    note_many(ledger, 2)
    chain_pending(ledger)
    assert isinstance(_plan(ledger, Head.read(ledger), 100), str)
    note_many(ledger, 1, start=2)
    exports = export_log(ledger, disk)
    assert [(e.first, e.last) for e in exports] == [(1, 2), (3, 3)]


class Unreadable(LocalStorage):
    """Local disk whose objects do not read back as written (a store that corrupts)."""

    def verify(self, key: str, size: int, sha256: str) -> str | None:
        return f"{key} has sha256 0000, {sha256} was archived"


def test_an_export_that_does_not_read_back_is_not_trimmed(ledger: Ledger, tmp_path: Path) -> None:
    note_many(ledger, 2)
    with pytest.raises(AuditLogError, match="does not read back"):
        export_log(ledger, Unreadable("bad", tmp_path / "bad"))
    assert len(chained(ledger)) == 2 and Head.read(ledger).exporting is not None and records(ledger) == []
    disk = LocalStorage("disk", tmp_path / "bad")
    (export,) = export_log(ledger, disk)  # the storage mended: the same plan, the object already there
    assert (export.first, export.last) == (1, 2) and chained(ledger) == []


def test_entries_missing_from_redis_stop_the_export(ledger: Ledger, disk: LocalStorage) -> None:
    note_many(ledger, 3)
    chain_pending(ledger)
    ledger.redis.lpop(ledger.keys.auditlog_chain)  # seq 1 gone before it was exported
    with pytest.raises(AuditLogError, match="starts at seq 2"):
        export_log(ledger, disk)
    assert len(chained(ledger)) == 2


def test_exporters_running_at_once_export_each_entry_once(ledger: Ledger, disk: LocalStorage,
                                                          redis_url: str) -> None:
    note_many(ledger, 300)
    errors: list[BaseException] = []

    def export() -> None:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            for _ in range(5):
                export_log(Ledger(client), disk, max_entries=17, wait=30)
                note_many(Ledger(client), 3, start=1000)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=export) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    export_log(ledger, disk)
    done = records(ledger)
    lines = [line for e in done for line in exported_lines(disk, e.key)]
    assert len(lines) == 300 + 4 * 5 * 3 == Head.read(ledger).exported_seq
    assert_linked(lines)
    assert len(list((disk.root / "audit-log").rglob("*.jsonl"))) == len(done)  # no stray object


def test_an_export_into_s3_is_create_only_and_reads_back(ledger: Ledger, moto_server: str, bucket: str) -> None:
    storage = s3_storage(moto_server, bucket, "archive/")
    note_many(ledger, 2)
    (first,) = export_log(ledger, storage)
    note_many(ledger, 1, start=2)
    (second,) = export_log(ledger, storage)
    for export in (first, second):
        assert storage.verify(export.key, export.bytes, export.sha256) is None
    body = b"".join(storage.read(second.key)).decode()
    assert json.loads(body.splitlines()[0])["prev"] == json.loads(b"".join(storage.read(first.key)).decode()
                                                                  .splitlines()[-1])["hash"]
    storage.close()


def test_while_another_process_exports_the_scheduler_skips_and_the_cli_waits_then_says_so(
        ledger: Ledger, disk: LocalStorage) -> None:
    note_many(ledger, 2)
    other = ledger.redis.lock(ledger.keys.auditlog_export_lock, timeout=60)
    assert other.acquire()
    assert export_log(ledger, disk) == []
    with pytest.raises(AuditLogError, match="another process"):
        export_log(ledger, disk, wait=0.2)
    other.release()
    assert len(export_log(ledger, disk)) == 1


def test_recording_a_plan_another_process_finished_is_refused(ledger: Ledger, disk: LocalStorage) -> None:
    """Two exports of one plan (a lock that lapsed): the second to record it trims nothing."""
    note_many(ledger, 2)
    chain_pending(ledger)
    plan = _plan(ledger, Head.read(ledger), 100)
    assert isinstance(plan, str)
    lines = ledger.redis.lrange(ledger.keys.auditlog_chain, 0, -1)
    (export,) = export_log(ledger, disk)
    note_many(ledger, 2, start=2)
    chain_pending(ledger)
    done = ledger.redis.register_script(DONE)
    args = [ledger.prefix, plan, export.key, export.record(), 2, 1, 2, lines[-1], json.loads(lines[-1])["hash"]]
    assert done(args=args) == 0
    assert [e["seq"] for e in chained(ledger)] == [3, 4]
