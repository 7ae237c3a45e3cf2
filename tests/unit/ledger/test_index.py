"""The index of `archiver find` (worker/ledger/index.py and the INDEX Lua of worker/ledger/scripts.py):
written at intake, given the call's custom terms, removed with what is pruned, built for older ledgers
by the schema migration; against a real redis-server."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from worker.clock import to_ms
from worker.files import StreamFile, transfer_id
from worker.ledger import scripts as lua
from worker.ledger.index import (
    MAX_TERMS,
    custom_terms,
    index_existing,
    index_known,
    remove_from_index,
)
from worker.ledger.models import NewTransfer
from worker.ledger.prune import prune_archived
from worker.ledger.schema import SCHEMA_VERSION, ensure_schema
from worker.ledger.store import Ledger

START = datetime(2026, 3, 3, 23, 30, tzinfo=UTC)


def a_file(call_cid: str = "default:c1", name: str = "a", start: datetime = START) -> StreamFile:
    return StreamFile(call_cid=call_cid, kind="recording", filename=f"rec_{name}.mp4", url="https://cdn/x?sig=1",
                      start_time=start, end_time=start + timedelta(minutes=40))


def record(ledger: Ledger, file: StreamFile, custom: list[str] | None = None) -> str:
    tid = transfer_id(file.file_id, "disk")
    ledger.record(file, [NewTransfer(tid, "disk", f"k/{file.filename}")], expires_at=file.end_time + timedelta(days=14),
                  custom=custom)
    return file.file_id


def index_keys(ledger: Ledger) -> dict[str, Any]:
    """Every index entry: sorted sets with their scores, the call sets with their members."""
    found: dict[str, Any] = {}
    for key in sorted(ledger.redis.scan_iter("archiver:index:*")):
        found[key] = ledger.redis.zrange(key, 0, -1, withscores=True)
    for key in sorted(ledger.redis.scan_iter("archiver:call_files:*")):
        found[key] = sorted(ledger.redis.smembers(key))
    return found


def test_intake_indexes_a_file_by_call_type_and_the_utc_day_it_started(ledger: Ledger) -> None:
    fid = record(ledger, a_file())
    at = float(to_ms(START))
    assert index_keys(ledger) == {
        "archiver:index:type:default": [(fid, at)],
        "archiver:index:day:2026-03-03": [(fid, at)],
        "archiver:index:days": [("2026-03-03", float(to_ms(datetime(2026, 3, 3, tzinfo=UTC))))],
        "archiver:call_files:c1": [fid],
    }
    record(ledger, a_file())  # a redelivery changes nothing
    assert len(index_keys(ledger)) == 4


def test_the_scripts_day_is_the_utc_calendar_date_for_any_time(ledger: Ledger) -> None:
    """The Lua date arithmetic agrees with Python's calendar: leap days, century years, day edges."""
    day_of = ledger.redis.register_script(lua.INDEX + "return day_of(tonumber(ARGV[1]))")
    edges = [datetime(2000, 2, 29, 23, 59, 59, 999000, tzinfo=UTC), datetime(2100, 3, 1, tzinfo=UTC),
             datetime(1970, 1, 1, tzinfo=UTC), datetime(2024, 12, 31, 23, 59, tzinfo=UTC),
             datetime(2026, 1, 1, tzinfo=UTC) - timedelta(milliseconds=1)]
    rng = random.Random(16)
    moments = edges + [datetime(1990, 1, 1, tzinfo=UTC) + timedelta(milliseconds=rng.randrange(5 * 10**12))
                       for _ in range(300)]
    for moment in moments:
        assert day_of(args=[to_ms(moment)]) == moment.strftime("%Y-%m-%d"), moment


def test_custom_terms_are_the_scalar_values_spelled_as_a_search_spells_them() -> None:
    call = {"custom": {"tenant": "acme", "seats": 5, "ratio": 2.5, "vip": True, "trial": False, "none": None,
                       "tags": ["a"], "meta": {"x": 1}, "long": "v" * 129, "k" * 65: "x", "": "empty key",
                       "note": "", "nan": float("nan")}}
    assert custom_terms(call) == ["note=", "ratio=2.5", "seats=5", "tenant=acme", "trial=false", "vip=true"]
    assert custom_terms({"custom": "not an object"}) == custom_terms({}) == custom_terms(None) == []
    many = {"custom": {f"k{n:02d}": n for n in range(30)}}
    assert custom_terms(many) == [f"k{n:02d}={n}" for n in range(MAX_TERMS)]


def test_the_calls_custom_terms_index_the_file_and_replace_the_ones_it_had(ledger: Ledger) -> None:
    fid = record(ledger, a_file(), custom=["tenant=acme", "vip=true"])
    assert ledger.redis.zrange("archiver:index:custom:tenant=acme", 0, -1) == [fid]
    assert ledger.redis.zscore("archiver:index:custom:vip=true", fid) == to_ms(START)
    record(ledger, a_file(), custom=["tenant=globex"])  # the call's data changed
    assert not ledger.redis.exists("archiver:index:custom:tenant=acme", "archiver:index:custom:vip=true")
    assert ledger.redis.zrange("archiver:index:custom:tenant=globex", 0, -1) == [fid]
    assert ledger.file(fid)["custom"] == '["tenant=globex"]'
    record(ledger, a_file())  # data not known this time: the terms stay
    assert ledger.redis.zrange("archiver:index:custom:tenant=globex", 0, -1) == [fid]
    record(ledger, a_file(), custom=[])  # known, and none
    assert not list(ledger.redis.scan_iter("archiver:index:custom:*")) and "custom" not in ledger.file(fid)


def test_index_known_indexes_recorded_files_only(ledger: Ledger) -> None:
    fid = record(ledger, a_file())
    call = {"cid": "default:c1", "custom": {"tenant": "ünïcode ✓", "room": 7}}
    assert index_known(ledger, [fid, "f_not_recorded"], call) == 1
    assert ledger.redis.zrange("archiver:index:custom:tenant=ünïcode ✓", 0, -1) == [fid]
    assert ledger.redis.zrange("archiver:index:custom:room=7", 0, -1) == [fid]
    assert not ledger.redis.exists("archiver:file:f_not_recorded")
    assert index_known(ledger, [fid], None) == 1  # terms left as they are
    assert ledger.redis.zrange("archiver:index:custom:room=7", 0, -1) == [fid]


def test_removing_a_file_from_the_index_leaves_the_others_and_drops_an_empty_day(ledger: Ledger) -> None:
    first = record(ledger, a_file(name="a"), custom=["tenant=acme"])
    second = record(ledger, a_file(name="b"), custom=["tenant=acme"])
    other_day = record(ledger, a_file(name="c", start=START + timedelta(days=1)))
    assert remove_from_index(ledger, first)
    assert ledger.redis.zrange("archiver:index:custom:tenant=acme", 0, -1) == [second]
    assert ledger.redis.zrange("archiver:index:day:2026-03-03", 0, -1) == [second]
    assert remove_from_index(ledger, other_day)
    assert ledger.redis.zrange("archiver:index:days", 0, -1) == ["2026-03-03"]
    assert ledger.redis.smembers("archiver:call_files:c1") == {second}
    assert ledger.file(first)  # its record is the caller's to delete
    assert not remove_from_index(ledger, "f_not_recorded")


def archive(ledger: Ledger, tid: str) -> None:
    assert ledger.finish(tid, ledger.claim(tid, "w", 60_000).token, "archived", bytes=10, sha256="ab" * 32)


def test_prune_removes_the_index_entries_of_the_files_it_forgets(ledger: Ledger) -> None:
    """Files that ended long ago (Stream's deadline passed) archived long ago are pruned, and leave no
    index entry; a file that keeps a transfer keeps its entries."""
    old = START - timedelta(days=400)
    pruned = record(ledger, a_file(name="old", start=old), custom=["tenant=acme"])
    kept_file = a_file("default:c2", "kept", old)
    kept = kept_file.file_id
    tids = [transfer_id(kept, s) for s in ("disk", "s3")]
    ledger.record(kept_file, [NewTransfer(t, s, "k") for t, s in zip(tids, ("disk", "s3"), strict=True)],
                  expires_at=old + timedelta(days=14), custom=["tenant=acme"])
    for tid in (transfer_id(pruned, "disk"), tids[0]):
        archive(ledger, tid)
    summary = prune_archived(ledger, timedelta(0), now=ledger.now_ms() + 1)
    assert (summary.transfers, summary.files) == (2, 1)
    at = float(to_ms(old))
    assert index_keys(ledger) == {
        "archiver:index:type:default": [(kept, at)], f"archiver:index:day:{old:%Y-%m-%d}": [(kept, at)],
        "archiver:index:days": [(f"{old:%Y-%m-%d}", float(to_ms(old) - to_ms(old) % 86_400_000))],
        "archiver:index:custom:tenant=acme": [(kept, at)], "archiver:call_files:c2": [kept],
    }


def drop_index(ledger: Ledger) -> None:
    """A ledger as versions before the index left it: no index, and call sets only for some files."""
    ledger.redis.delete(*ledger.redis.scan_iter("archiver:index:*"), *ledger.redis.scan_iter("archiver:call_files:*"))


def test_the_migration_indexes_every_file_recorded_before_the_index(ledger: Ledger) -> None:
    for n in range(30):
        record(ledger, a_file(f"default:c{n % 4}", f"f{n}", START + timedelta(hours=7 * n)),
               custom=["tenant=acme"] if n % 3 == 0 else None)
    built = index_keys(ledger)
    drop_index(ledger)
    ledger.redis.set("archiver:schema_version", 1)
    assert ensure_schema(ledger) == SCHEMA_VERSION == 2
    assert index_keys(ledger) == built  # the custom terms were in the files' hashes
    assert not ledger.redis.exists("archiver:index:migration")
    assert index_existing(ledger) == 30 and index_keys(ledger) == built  # again: nothing changes


class FailingScan(redis.Redis):
    """A real client whose connection drops at its third SCAN (the migration interrupted)."""

    scans = 0

    def scan(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override] # the signature is redis-py's
        FailingScan.scans += 1
        if FailingScan.scans == 3:
            raise redis.ConnectionError("connection lost")
        return super().scan(*args, **kwargs)


def test_an_interrupted_migration_resumes_where_it_stopped(ledger: Ledger, redis_url: str) -> None:
    for n in range(200):
        record(ledger, a_file(f"default:c{n}", f"f{n}"))
    built = index_keys(ledger)
    drop_index(ledger)
    failing = Ledger(FailingScan.from_url(redis_url, decode_responses=True))
    with pytest.raises(redis.ConnectionError):
        index_existing(failing, batch=50)
    cursor = ledger.redis.get("archiver:index:migration")
    assert cursor not in (None, "0")
    done_first = len(ledger.redis.zrange("archiver:index:type:default", 0, -1))
    assert 0 < done_first < 200
    assert 0 < index_existing(ledger, batch=50) < 200  # resumed from the cursor, not from the start
    assert index_keys(ledger) == built and not ledger.redis.exists("archiver:index:migration")
