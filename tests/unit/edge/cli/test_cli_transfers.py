"""`archiver transfers retry|export|prune` as real processes against a real Redis ledger."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.ledger_states import DAY_MS, a_file, add, add_waiting, age, run_cli, run_clis, snapshot
from tests.support.settings import write_config
from worker.clock import now_ms
from worker.ledger.schema import SCHEMA_VERSION
from worker.ledger.store import Ledger
from worker.ledger.unrouted import PENDING_TEXT

ERROR = "Stream API GET /api/v2/video/call/default/w1: ConnectError"


# -- retry -------------------------------------------------------------------------------------------


def queued_messages(client: redis.Redis) -> list[str]:
    """Transfer ids in the Celery queue (the task's argsrepr in each message's headers)."""
    return [json.loads(raw)["headers"]["argsrepr"] for raw in client.lrange("archiver.transfers", 0, -1)]


def test_retry_by_state_requeues_every_failed_transfer_and_hands_it_to_the_workers(
        ledger: Ledger, redis_url: str) -> None:
    failed = add(ledger, "f1", "failed", days_ago=2) + add(ledger, "f2", "failed")
    (lost,) = add(ledger, "l1", "lost")
    (queued,) = add(ledger, "q1")
    before = now_ms()
    result = run_cli(redis_url, "transfers", "retry", "--state", "failed")
    assert result.returncode == 0, result.stderr
    assert "queued 2 transfer(s) again" in result.stdout
    assert all(f"queued {tid}" in result.stdout for tid in failed)
    for tid in failed:
        transfer = ledger.get(tid)
        assert transfer is not None and transfer.state == "queued"
        due = ledger.redis.zscore(ledger.keys.due, tid)
        assert due is not None and before - 5000 <= due <= now_ms()
        assert "retried by an operator" in (transfer.error or "")
    assert sorted(ledger.ids("queued")) == sorted([*failed, queued])
    assert ledger.ids("lost") == [lost] and ledger.ids("failed") == []
    messages = queued_messages(ledger.redis)
    assert sorted(messages) == sorted(repr([tid]) for tid in failed)


def test_retry_by_state_with_nothing_in_that_state_says_so_and_fails(ledger: Ledger, redis_url: str) -> None:
    add(ledger, "a1", "archived")
    result = run_cli(redis_url, "transfers", "retry", "--state", "lost")
    assert result.returncode == 1
    assert "no lost transfers: nothing to retry" in result.stderr


def test_retry_refuses_a_state_where_retrying_means_nothing(ledger: Ledger, redis_url: str) -> None:
    (archived,) = add(ledger, "a1", "archived")
    result = run_cli(redis_url, "transfers", "retry", "--state", "archived")
    assert result.returncode == 2 and "only failed or lost" in result.stderr
    assert ledger.ids("archived") == [archived]
    assert run_cli(redis_url, "transfers", "retry").returncode == 2
    assert run_cli(redis_url, "transfers", "retry", archived, "--state", "failed").returncode == 2


def test_retry_by_id_requeues_what_it_can_and_names_the_rest(ledger: Ledger, redis_url: str) -> None:
    (failed,) = add(ledger, "f1", "failed")
    (archived,) = add(ledger, "a1", "archived")
    result = run_cli(redis_url, "transfers", "retry", failed, archived, "t_unknown")
    assert result.returncode == 1
    assert "queued 1 transfer(s) again" in result.stdout
    assert f"{archived}: archived, not failed or lost; left as it is" in result.stderr
    assert "t_unknown: no such transfer" in result.stderr
    assert ledger.ids("queued") == [failed] and ledger.ids("archived") == [archived]


def test_retry_when_the_broker_is_down_leaves_them_due_for_the_scheduler(ledger: Ledger, redis_url: str) -> None:
    (failed,) = add(ledger, "f1", "failed")
    result = run_cli(redis_url, "transfers", "retry", failed, ARCHIVER_BROKER_URL="redis://127.0.0.1:9/0")
    assert result.returncode == 0, result.stderr
    assert "scheduler" in result.stderr and "queued 1 transfer(s) again" in result.stdout
    assert ledger.ids("queued") == [failed] and ledger.redis.zscore(ledger.keys.due, failed) is not None


# -- export ------------------------------------------------------------------------------------------


def audit_ledger(ledger: Ledger) -> dict[str, str]:
    (archived,) = add(ledger, "a1", "archived")
    (failed,) = add(ledger, "f1", "failed", error="GET https://cdn.example/f.mp4?sig=SIGNED-URL-SECRET: 403")
    (queued,) = add(ledger, "q1")
    return {"archived": archived, "failed": failed, "queued": queued}


def test_export_csv_has_a_header_and_one_row_per_transfer_with_its_files_facts(
        ledger: Ledger, redis_url: str) -> None:
    ids = audit_ledger(ledger)
    result = run_cli(redis_url, "transfers", "export")
    assert result.returncode == 0, result.stderr
    assert "exported 3 transfer(s)" in result.stderr
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(result.stdout))}
    assert set(rows) == set(ids.values())
    archived = rows[ids["archived"]]
    stored = ledger.get(ids["archived"])
    assert stored is not None
    assert (archived["state"], archived["bytes"], archived["sha256"]) == ("archived", "1234", "ab" * 32)
    assert (archived["call_cid"], archived["storage"], archived["key"]) == ("default:a1", "disk", stored.key)
    assert (archived["recording_type"], archived["egress_id"], archived["session_id"]) == ("composite", "eg-a1",
                                                                                         "s-a1")
    assert archived["end_time"] == "2026-01-10T12:00:00.000Z" and archived["error"] == ""
    assert rows[ids["queued"]]["bytes"] == "" and rows[ids["failed"]]["state"] == "failed"
    assert "url" not in archived
    assert "SIGNED-URL-SECRET" not in result.stdout and "cdn.example" in rows[ids["failed"]]["error"]


def test_export_json_writes_one_array_of_the_state_asked_to_a_file(
        ledger: Ledger, redis_url: str, tmp_path: Path) -> None:
    ids = audit_ledger(ledger)
    target = tmp_path / "audit.json"
    result = run_cli(redis_url, "transfers", "export", "--format", "json", "--state", "failed", "--output", str(target))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    (row,) = json.loads(target.read_text())
    assert row["id"] == ids["failed"] and row["attempts"] == 1 and row["bytes"] is None
    assert row["start_time"] == "2026-01-10T11:55:00.000Z" and "url" not in row
    assert "SIGNED-URL-SECRET" not in target.read_text()
    assert not list(tmp_path.glob(".*partial"))


def test_export_of_nothing_is_an_empty_array_or_a_header(ledger: Ledger, redis_url: str) -> None:
    add(ledger, "a1", "archived")
    as_json = run_cli(redis_url, "transfers", "export", "--format", "json", "--state", "lost")
    assert as_json.returncode == 0 and json.loads(as_json.stdout) == []
    as_csv = run_cli(redis_url, "transfers", "export", "--state", "lost")
    assert as_csv.stdout.startswith("id,state,") and len(as_csv.stdout.splitlines()) == 1


def test_export_refuses_an_unknown_format_or_state(redis_url: str) -> None:
    assert run_cli(redis_url, "transfers", "export", "--format", "xml").returncode == 2
    assert run_cli(redis_url, "transfers", "export", "--state", "done").returncode == 2


# -- files waiting for their routes -----------------------------------------------------------------


def test_list_and_show_give_a_file_waiting_for_its_routes_as_a_routing_row(ledger: Ledger, redis_url: str) -> None:
    (queued,) = add(ledger, "q1")
    failing, fresh = add_waiting(ledger, "w1"), add_waiting(ledger, "w2")
    ledger.defer_routing(failing, 60_000, ERROR)
    result, only, table, unknown_state, shown, unknown = run_clis(redis_url, [  # reads only: run together
        ["transfers", "list", "--json"], ["transfers", "list", "--json", "--state", "routing"],
        ["transfers", "list", "--state", "routing"], ["transfers", "list", "--state", "done"],
        ["transfers", "show", failing], ["transfers", "show", "f_unknown"]])
    assert result.returncode == 0, result.stderr
    rows = {row["id"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert set(rows) == {queued, failing, fresh}
    row = rows[failing]
    assert (row["state"], row["storage"], row["error"], row["attempts"]) == ("routing", None, ERROR, 1)
    assert (row["call_cid"], row["filename"], row["file_id"]) == ("default:w1", "rec_w1.mp4", failing)
    assert row["expires_at"] == "2026-01-24T12:00:00.000Z"
    assert rows[fresh]["error"] == PENDING_TEXT and rows[queued]["storage"] == "disk"

    assert sorted(json.loads(line)["id"] for line in only.stdout.splitlines()) == sorted([failing, fresh])
    assert table.returncode == 0 and failing in table.stdout and "ConnectError" in table.stdout
    assert queued not in table.stdout and "routing" in table.stdout
    assert "routing" in unknown_state.stderr  # the states it accepts

    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == row
    assert unknown.returncode == 1


def test_export_includes_files_waiting_for_their_routes(ledger: Ledger, redis_url: str) -> None:
    (queued,) = add(ledger, "q1")
    fid = add_waiting(ledger, "w1")
    ledger.defer_routing(fid, 0, "GET https://cdn.example/f.mp4?sig=SIGNED-URL-SECRET: refused")
    result = run_cli(redis_url, "transfers", "export")
    assert result.returncode == 0, result.stderr
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(result.stdout))}
    assert set(rows) == {queued, fid} and "exported 2 transfer(s)" in result.stderr
    row = rows[fid]
    assert (row["state"], row["storage"], row["key"], row["egress_id"]) == ("routing", "", "", "eg-w1")
    assert row["end_time"] == "2026-01-10T12:00:00.000Z" and row["file_recorded_at"] != ""
    assert "SIGNED-URL-SECRET" not in result.stdout and "cdn.example" in row["error"]
    only = run_cli(redis_url, "transfers", "export", "--format", "json", "--state", "routing")
    assert [r["id"] for r in json.loads(only.stdout)] == [fid]


def test_retry_leaves_a_file_waiting_for_its_routes_alone(ledger: Ledger, redis_url: str) -> None:
    fid = add_waiting(ledger, "w1")
    refused = run_cli(redis_url, "transfers", "retry", "--state", "routing")
    assert refused.returncode == 2 and "only failed or lost" in refused.stderr
    result = run_cli(redis_url, "transfers", "retry", fid)
    assert result.returncode == 1 and f"{fid}: routing (waiting for its routes" in result.stderr
    assert ledger.file(fid)["routing"] == "pending"


# -- prune -------------------------------------------------------------------------------------------


STORES = ("disk", "s3")


@pytest.fixture
def stores(tmp_path: Path) -> dict[str, str]:
    """A configuration whose storages `disk` and `s3` are local directories: prune reads objects back."""
    config = {"storages": [{"name": s, "storage_type": "local", "bucket": str(tmp_path / s)} for s in STORES],
              "default_storage": "disk"}
    return {"ARCHIVER_CONFIG": str(write_config(tmp_path / "archiver.toml", config))}


def archived(ledger: Ledger, root: Path, name: str, storages: tuple[str, ...] = ("disk",), **kw: Any) -> list[str]:
    """`add` an archived file whose objects exist under `root`/<storage>, with the size and SHA-256 recorded."""
    data = f"the bytes of {name}".encode()
    ids = add(ledger, name, "archived", storages=storages, bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
              **kw)
    for storage in storages:
        path = root / storage / "default" / name / f"rec_{name}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return ids


def test_prune_forgets_only_archived_transfers_older_than_the_cutoff(ledger: Ledger, redis_url: str,
                                                                    stores: dict[str, str], tmp_path: Path) -> None:
    (old,) = archived(ledger, tmp_path, "old", days_ago=120)
    (recent,) = archived(ledger, tmp_path, "recent", days_ago=10)
    mixed = archived(ledger, tmp_path, "mixed", storages=STORES, days_ago=120)
    ledger.redis.hset(f"archiver:transfer:{mixed[1]}", "state", "failed")  # one destination refused
    ledger.redis.zrem("archiver:state:archived", mixed[1])
    ledger.redis.zadd("archiver:state:failed", {mixed[1]: now_ms() - 120 * DAY_MS})
    (failed,) = add(ledger, "failed", "failed", days_ago=200)
    (lost,) = add(ledger, "lost", "lost", days_ago=200)
    (queued,) = add(ledger, "queued", days_ago=200)
    (skipped,) = add(ledger, "skipped", "skipped", days_ago=200)
    file_of = {tid: ledger.get(tid).file_id for tid in ledger.ids()}
    kept = {k: v for k, v in snapshot(ledger.redis).items()
            if not any(part in k for part in (old, mixed[0], file_of[old], file_of[mixed[0]], "call_files:old"))}

    result = run_cli(redis_url, "transfers", "prune", "--older-than", "90d", **stores)
    assert result.returncode == 0, result.stderr
    assert "pruned 2 archived transfer(s) and 1 file record(s)" in result.stdout

    assert ledger.get(old) is None and ledger.file(file_of[old]) == {}
    assert not ledger.redis.exists(f"archiver:file:{file_of[old]}:transfers")
    assert not ledger.redis.exists("archiver:call_files:old")  # its call's index lost its only file
    assert ledger.redis.smembers("archiver:call_files:mixed") == {file_of[mixed[0]]}  # a file kept stays indexed
    for index in ("transfers", "state:archived", "due", "expiry"):
        assert ledger.redis.zscore(f"archiver:{index}", old) is None
        assert ledger.redis.zscore(f"archiver:{index}", mixed[0]) is None
    assert ledger.get(mixed[0]) is None
    assert ledger.file(file_of[mixed[0]]) != {} and ledger.transfers_of(file_of[mixed[0]]) == [mixed[1]]
    after = snapshot(ledger.redis)
    for key, value in kept.items():  # everything else is exactly as it was
        if key.startswith("archiver:index:"):  # the index of `archiver find` lost the pruned file only
            assert after.get(key, ("zset", []))[1] == [m for m in value[1] if m[0] != file_of[old]], key
        elif key not in ("archiver:transfers", "archiver:state:archived", "archiver:auditlog:pending") \
                and not key.startswith("archiver:file:"):
            assert after[key] == value, key
    noted = [json.loads(raw) for raw in after["archiver:auditlog:pending"][1]]
    assert noted[:-2] == [json.loads(raw) for raw in kept["archiver:auditlog:pending"][1]]
    assert sorted((e["action"], e["actor"], e["transfer_id"]) for e in noted[-2:]) == sorted(
        [("prune", "cli", old), ("prune", "cli", mixed[0])])  # the audit log's entries, one per transfer pruned
    assert sorted(ledger.ids()) == sorted([recent, mixed[1], failed, lost, queued, skipped])
    assert ledger.ids("archived") == [recent]
    for tid in (recent, mixed[1], failed, lost, queued, skipped):
        assert after[f"archiver:transfer:{tid}"] == kept[f"archiver:transfer:{tid}"]


def test_prune_keeps_archived_transfers_whose_files_stream_still_holds(ledger: Ledger, redis_url: str) -> None:
    from datetime import UTC, datetime, timedelta

    (fresh,) = add(ledger, "fresh", "archived", ended=datetime.now(UTC) - timedelta(days=1), days_ago=0.5)
    result = run_cli(redis_url, "transfers", "prune", "--older-than", "1h")
    assert result.returncode == 0, result.stderr
    assert "pruned 0 archived transfer(s)" in result.stdout and "kept 1" in result.stdout
    assert ledger.ids("archived") == [fresh]


def test_prune_dry_run_counts_and_changes_nothing(ledger: Ledger, redis_url: str, stores: dict[str, str],
                                                  tmp_path: Path) -> None:
    archived(ledger, tmp_path, "two", storages=STORES, days_ago=100)
    archived(ledger, tmp_path, "recent", days_ago=1)
    add(ledger, "failed", "failed", days_ago=100)
    before = snapshot(ledger.redis)
    result = run_cli(redis_url, "transfers", "prune", "--older-than", "90d", "--dry-run", **stores)
    assert result.returncode == 0, result.stderr
    assert "would prune 2 archived transfer(s) and 1 file record(s)" in result.stdout
    assert "nothing deleted" in result.stdout
    after = snapshot(ledger.redis)
    assert after == before | {"archiver:schema_version": ("string", str(SCHEMA_VERSION))}


def test_prune_keeps_the_entry_of_a_file_whose_object_no_longer_matches(
        ledger: Ledger, redis_url: str, stores: dict[str, str], tmp_path: Path) -> None:
    """An object rewritten (same size), missing, or in a storage no longer configured fails the check:
    its transfer, and so its file's record, stays in the ledger, and prune_skipped says why."""
    (rewritten,) = archived(ledger, tmp_path, "rewritten", days_ago=120)
    (gone,) = archived(ledger, tmp_path, "gone", days_ago=120)
    (elsewhere,) = archived(ledger, tmp_path, "elsewhere", storages=("removed",), days_ago=120)
    (fine,) = archived(ledger, tmp_path, "fine", days_ago=120)
    path = tmp_path / "disk" / "default" / "rewritten" / "rec_rewritten.mp4"
    path.write_bytes(path.read_bytes().upper())
    (tmp_path / "disk" / "default" / "gone" / "rec_gone.mp4").unlink()
    for dry in (True, False):
        result = run_cli(redis_url, "transfers", "prune", "--older-than", "90d", *(["--dry-run"] if dry else []),
                         **stores)
        assert result.returncode == 0, result.stderr
        assert " 1 archived transfer(s) and 1 file record(s)" in result.stdout and "kept 3" in result.stdout
    skipped = {json.loads(line)["transfer_id"]: json.loads(line)["reason"] for line in result.stderr.splitlines()
               if '"prune_skipped"' in line}
    assert set(skipped) == {rewritten, gone, elsewhere} and "sha256" in skipped[rewritten]
    assert "missing" in skipped[gone]
    assert sorted(ledger.ids("archived")) == sorted([rewritten, gone, elsewhere]) and ledger.get(fine) is None
    for tid in (rewritten, gone, elsewhere):
        transfer = ledger.get(tid)
        assert transfer is not None and ledger.file(transfer.file_id) != {}


def test_prune_checks_the_state_again_and_leaves_a_transfer_retried_meanwhile(ledger: Ledger, redis_url: str) -> None:
    (retried,) = add(ledger, "retried", "archived", days_ago=100)
    ledger.redis.hset(f"archiver:transfer:{retried}", "state", "queued")  # as if it changed after the listing
    result = run_cli(redis_url, "transfers", "prune", "--older-than", "90d")
    assert result.returncode == 0, result.stderr
    assert "pruned 0" in result.stdout
    transfer = ledger.get(retried)
    assert transfer is not None and transfer.state == "queued"


def test_prune_refuses_a_bad_duration(redis_url: str) -> None:
    bads = ("ninety days", "0d", "-5d")
    for bad, result in zip(bads, run_clis(redis_url, [["transfers", "prune", "--older-than", b] for b in bads]),
                           strict=True):
        assert result.returncode == 2, bad
        assert "--older-than" in result.stderr


def test_prune_by_age_uses_the_archive_time_not_the_creation(ledger: Ledger, redis_url: str) -> None:
    (tid,) = add(ledger, "late", "archived")
    ledger.redis.zadd("archiver:transfers", {tid: now_ms() - 300 * DAY_MS})  # recorded long ago
    age(ledger, tid, 5)  # archived only five days ago
    assert "pruned 0" in run_cli(redis_url, "transfers", "prune", "--older-than", "90d").stdout
    assert ledger.get(tid) is not None


# -- one call ---------------------------------------------------------------------------------------


def test_list_by_call_gives_that_calls_transfers_and_waiting_files_only(ledger: Ledger, redis_url: str) -> None:
    both = add(ledger, "c1", "archived", storages=("disk", "s3"))
    add(ledger, "c2", "failed")
    later = replace(a_file("c1"), filename="rec_c1_b.mp4")
    ledger.record(later, [], expires_at=later.end_time + timedelta(days=14), route_in_ms=0)  # waits for its routes
    result, by_id, none_queued, table = run_clis(redis_url, [  # reads only: run together
        ["transfers", "list", "--json", "--call", "default:c1"],
        ["transfers", "list", "--json", "--call", "c2", "--state", "failed"],
        ["transfers", "list", "--json", "--call", "c2", "--state", "queued"], ["transfers", "list", "--call", "c1"]])
    assert result.returncode == 0, result.stderr
    rows = {r["id"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert set(rows) == {*both, later.file_id} and {r["call_cid"] for r in rows.values()} == {"default:c1"}
    assert {(rows[t]["state"], rows[t]["bytes"], rows[t]["sha256"]) for t in both} == {("archived", 1234, "ab" * 32)}
    assert rows[later.file_id]["state"] == "routing"
    assert [json.loads(line)["call_cid"] for line in by_id.stdout.splitlines()] == ["default:c2"]
    assert none_queued.stdout == ""
    assert table.returncode == 0 and "rec_c1_b.mp4" in table.stdout and "rec_c2" not in table.stdout
