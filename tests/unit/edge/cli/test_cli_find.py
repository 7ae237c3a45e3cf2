"""`archiver find` as a real process against a real Redis ledger: filters, the JSON of `transfers show`,
newest first, limits, and the messages for no result and bad arguments."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tests.support.ledger_states import run_cli, run_clis
from tests.unit.ledger.test_search import add
from worker.ledger.store import Ledger

T0 = datetime(2026, 5, 10, 9, 0, tzinfo=UTC)


def seed(ledger: Ledger) -> None:
    add(ledger, "default:acme-1", "a1", T0, custom=["tenant=acme"], storages=("disk", "s3"))
    add(ledger, "default:acme-1", "a1-t", T0 + timedelta(minutes=1), kind="transcription", custom=["tenant=acme"])
    add(ledger, "livestream:acme-2", "l2", T0 + timedelta(days=2), custom=["tenant=acme", "vip=true"])
    add(ledger, "default:globex", "g1", T0 + timedelta(days=1), custom=["tenant=globex"])
    add(ledger, "default:acme-1", "queued", T0 + timedelta(days=3), custom=["tenant=acme"], archived=False)


def found(redis_url: str, *args: str) -> list[dict[str, object]]:
    result = run_cli(redis_url, "find", "--json", *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_json_gives_exactly_what_transfers_show_gives_newest_first(ledger: Ledger, redis_url: str) -> None:
    seed(ledger)
    rows = found(redis_url, "--custom", "tenant=acme")
    assert [(r["filename"], r["storage"]) for r in rows] == [
        ("l2.mp4", "disk"), ("a1-t.mp4", "disk"), ("a1.mp4", "disk"), ("a1.mp4", "s3")]
    shown = run_cli(redis_url, "transfers", "show", str(rows[0]["id"]))
    assert shown.returncode == 0 and json.loads(shown.stdout) == rows[0]
    assert all(r["state"] == "archived" for r in rows)
    first = run_cli(redis_url, "find", "--json", "--custom", "tenant=acme", "--limit", "1")
    assert [json.loads(line) for line in first.stdout.splitlines()] == rows[:1]
    assert "showing the newest 1; more archived files match" in first.stderr


def test_filters_intersect(ledger: Ledger, redis_url: str) -> None:
    seed(ledger)
    assert [r["filename"] for r in found(redis_url, "--call", "default:acme-1", "--kind", "transcription")] == \
        ["a1-t.mp4"]
    assert [r["filename"] for r in found(redis_url, "--custom", "tenant=acme", "--call-type", "livestream",
                                         "--custom", "vip=true")] == ["l2.mp4"]
    assert [r["filename"] for r in found(redis_url, "--since", "2026-05-11", "--until", "2026-05-11")] == ["g1.mp4"]
    assert [r["filename"] for r in found(redis_url, "--call", "acme-2")] == ["l2.mp4"]  # an id alone


def test_the_table_and_its_limit(ledger: Ledger, redis_url: str) -> None:
    seed(ledger)
    result = run_cli(redis_url, "find", "--custom", "tenant=acme", "--limit", "2")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "acme" in line]
    assert len(lines) == 2 and "l2.mp4" in lines[0] and "a1-t.mp4" in lines[1]
    assert "livestream:acme-2/l2" in lines[0] and "2026-05-12T09:00:00.000Z" in lines[0]  # its key, its start
    assert "showing the newest 2; more archived files match" in result.stderr
    whole = run_cli(redis_url, "find", "--custom", "tenant=acme", "--limit", "0")
    assert "more archived files match" not in whole.stderr and whole.stdout.count(".mp4") == 4


def test_no_match_says_so_and_succeeds(ledger: Ledger, redis_url: str) -> None:
    seed(ledger)
    commands = (["find", "--custom", "tenant=nobody"], ["find", "--json", "--call", "default:nope"])
    for result in run_clis(redis_url, commands):
        assert (result.returncode, result.stdout) == (0, ""), result.stderr
        assert "no archived file matches" in result.stderr


def test_bad_arguments_exit_2_with_the_reason(redis_url: str) -> None:
    cases = ((["--custom", "tenant"], "--custom takes KEY=VALUE"),
             (["--custom", "=acme"], "--custom takes KEY=VALUE"),
             (["--kind", "video"], "--kind takes one of recording"),
             (["--since", "yesterday"], "is not a date"),
             (["--since", "2026-05-12", "--until", "2026-05-10"], "--since must be before --until"),
             (["--call", "default:"], "--call takes a call cid"),
             (["--limit", "-1"], "Invalid value for '--limit'"))
    results = run_clis(redis_url, [["find", *args] for args, _ in cases])
    for (args, reason), result in zip(cases, results, strict=True):
        assert result.returncode == 2, (args, result.stderr)
        assert reason in result.stderr, (args, result.stderr)
