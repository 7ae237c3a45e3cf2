"""`archiver audit-log export|verify` as real processes on a real ledger and local disk: exit 0 on an
intact chain, 1 naming the first broken entry, 2 for bad arguments or configuration; and the CLI's own
changes (an operator's retry) noted with actor cli."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.ledger_states import add, run_cli
from tests.support.settings import write_config
from tests.unit.auditlog.conftest import note_many
from worker.ledger.store import Ledger


def configured(tmp_path: Path, **top: object) -> dict[str, str]:
    config = {"storages": [{"name": "disk", "storage_type": "local", "bucket": str(tmp_path / "disk")},
                           {"name": "vault", "storage_type": "local", "bucket": str(tmp_path / "vault")}],
              "default_storage": "disk", "audit_log_storage": "vault", **top}
    return {"ARCHIVER_CONFIG": str(write_config(tmp_path / "archiver.toml", config))}


def test_export_then_verify_then_a_tampered_line_is_named(ledger: Ledger, redis_url: str, tmp_path: Path) -> None:
    env = configured(tmp_path)
    note_many(ledger, 4)
    exported = run_cli(redis_url, "audit-log", "export", **env)
    assert exported.returncode == 0, exported.stderr
    assert "exported seq 1-4 (4 entries" in exported.stdout and str(tmp_path / "vault") in exported.stdout
    again = run_cli(redis_url, "audit-log", "export", **env)
    assert again.returncode == 0 and "nothing new to export" in again.stdout
    (obj,) = (tmp_path / "vault" / "audit-log").rglob("*.jsonl")

    checked = run_cli(redis_url, "audit-log", "verify", **env)
    assert checked.returncode == 0, checked.stderr
    assert "1 object(s) read, 4 entries checked (seq 1-4" in checked.stdout and "chain intact" in checked.stdout

    lines = obj.read_text().splitlines()
    lines[2] = json.dumps({**json.loads(lines[2]), "call_cid": "default:other"}, sort_keys=True,
                          separators=(",", ":"))
    obj.write_text("".join(line + "\n" for line in lines))
    tampered = run_cli(redis_url, "audit-log", "verify", **env)
    assert tampered.returncode == 1
    key = obj.relative_to(tmp_path / "vault").as_posix()
    assert f"chain BROKEN at seq 3 ({key} line 3): altered" in tampered.stdout


def test_bad_arguments_and_an_unknown_storage_exit_2(redis_url: str, tmp_path: Path) -> None:
    result = run_cli(redis_url, "audit-log", "verify", "--since", "last tuesday", **configured(tmp_path))
    assert result.returncode == 2 and "--since" in result.stderr
    result = run_cli(redis_url, "audit-log", "verify", **configured(tmp_path, audit_log_storage="nowhere"))
    assert result.returncode == 2 and "audit_log_storage: no storage named 'nowhere'" in result.stderr


def test_an_operators_retry_is_noted_as_the_clis(ledger: Ledger, redis_url: str, tmp_path: Path) -> None:
    (tid,) = add(ledger, "refused", "failed")
    result = run_cli(redis_url, "transfers", "retry", tid, **configured(tmp_path))
    assert result.returncode == 0, result.stderr
    (entry,) = [json.loads(raw) for raw in ledger.redis.lrange(ledger.keys.auditlog_pending, 0, -1)]
    assert (entry["action"], entry["actor"], entry["transfer_id"]) == ("retry", "cli", tid)


def test_exports_are_read_from_the_storage_they_went_to_after_audit_log_storage_changed(
        ledger: Ledger, redis_url: str, tmp_path: Path) -> None:
    note_many(ledger, 2)
    assert run_cli(redis_url, "audit-log", "export", **configured(tmp_path)).returncode == 0
    note_many(ledger, 2, start=2)
    moved = configured(tmp_path, audit_log_storage="disk")
    assert run_cli(redis_url, "audit-log", "export", **moved).returncode == 0
    assert list((tmp_path / "disk" / "audit-log").rglob("*.jsonl"))
    checked = run_cli(redis_url, "audit-log", "verify", **moved)
    assert checked.returncode == 0 and "2 object(s) read, 4 entries checked" in checked.stdout, checked.stdout

    config = {"storages": [{"name": "disk", "storage_type": "local", "bucket": str(tmp_path / "disk")}]}
    gone = {"ARCHIVER_CONFIG": str(write_config(tmp_path / "gone.toml", config))}
    result = run_cli(redis_url, "audit-log", "verify", **gone)
    assert result.returncode == 4 and "'vault', which the configuration no longer has" in result.stderr
