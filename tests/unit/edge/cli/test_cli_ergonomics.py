"""The `archiver` command for a new user: what it needs, what it says, how its output looks (real processes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tests.support.ledger_states import add, run_cli, run_clis
from worker.edge.cli.app import app
from worker.ledger.store import Ledger

NO_STREAM = {"STREAM_API_KEY": "", "STREAM_API_SECRET": ""}  # empty is unset, as the settings read it
MISSING = "missing required environment variable(s): STREAM_API_KEY, STREAM_API_SECRET"


def test_read_only_commands_need_neither_stream_key_nor_secret(ledger: Ledger, redis_url: str,
                                                               tmp_path: Path) -> None:
    """transfers list|show|export|prune and storage list|check run with Redis and the configuration alone."""
    (tid,) = add(ledger, "a1", "archived")
    commands = (["transfers", "list"], ["transfers", "list", "--json"], ["transfers", "show", tid],
                ["transfers", "export", "--format", "json"], ["transfers", "prune", "--older-than", "90d", "--dry-run"],
                ["storage", "list"], ["storage", "check", "local"])
    for args, result in zip(commands, run_clis(redis_url, commands, cwd=tmp_path, **NO_STREAM), strict=True):
        assert result.returncode == 0, (args, result.stderr)
        assert "STREAM_API" not in result.stderr, args
    assert tid in run_cli(redis_url, "transfers", "list", "--json", **NO_STREAM).stdout


@pytest.mark.parametrize("args", [["doctor"], ["backfill"], ["web"], ["serve"], ["transfers", "retry", "t_x"]])
def test_commands_that_talk_to_stream_still_ask_for_its_credentials(redis_url: str, args: list[str]) -> None:
    """Every command that signs a call, checks a webhook or queues work names both variables (exit 2)."""
    result = run_cli(redis_url, *args, **NO_STREAM)
    assert result.returncode == 2 and MISSING in result.stderr, result.stderr


def test_tables_are_not_cut_when_stdout_is_not_a_terminal(ledger: Ledger, redis_url: str) -> None:
    """`archiver transfers list | cat`: whole rows, however long, whatever COLUMNS says."""
    name = "a-rather-long-call-id-that-would-never-fit-in-eighty-columns-0123456789"
    (tid,) = add(ledger, name, "archived")
    result = run_cli(redis_url, "transfers", "list", COLUMNS="80")
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if tid in line)
    assert f"default:{name}" in row and f"rec_{name}.mp4" in row and len(row) > 80


def commands(group: typer.Typer, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path of the app, groups included."""
    found = [prefix]
    for info in group.registered_commands:
        found.append((*prefix, info.name or (info.callback.__name__ if info.callback else "")))
    for sub in group.registered_groups:
        if sub.typer_instance is not None and sub.name:
            found += commands(sub.typer_instance, (*prefix, sub.name))
    return found


def test_help_shows_no_type_for_flags() -> None:
    """No `<bool>` after a flag (a flag takes no value) in any command's --help."""
    runner = CliRunner()
    paths = commands(app)
    assert ("transfers", "list") in paths and ("storage", "check") in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (path, result.output)
        assert "--help" in result.output and "<bool>" not in result.output, (path, result.output)


def test_an_unreachable_api_names_the_host_and_the_cause(redis_url: str) -> None:
    """backfill against an API nobody listens on says so plainly, as `archiver doctor` does."""
    result = run_cli(redis_url, "backfill", "--since", "1d", STREAM_BASE_URL="http://127.0.0.1:1")
    assert result.returncode == 1
    assert "cannot reach Stream's API at http://127.0.0.1:1: connection refused" in result.stderr
    assert "HTTP -" not in result.stderr and "code None" not in result.stderr


def test_backfill_takes_only_enabled_kinds_stream_lists(redis_url: str, tmp_path: Path) -> None:
    """--kinds names kinds the configuration's `kinds` enables; frames have no listing to backfill from."""
    config = tmp_path / "archiver.toml"
    config.write_text('kinds = ["recording", "frame_recording"]\n')
    disabled = run_cli(redis_url, "backfill", "--kinds", "transcription", ARCHIVER_CONFIG=str(config))
    assert disabled.returncode == 2
    assert "--kinds: transcription not enabled (the configuration's kinds: recording, frame_recording)" in \
        disabled.stderr
    frames = run_cli(redis_url, "backfill", "--kinds", "frame_recording", ARCHIVER_CONFIG=str(config))
    assert frames.returncode == 2 and "--kinds takes recording, transcription" in frames.stderr
    config.write_text('kinds = ["frame_recording"]\n')
    none = run_cli(redis_url, "backfill", ARCHIVER_CONFIG=str(config))
    assert none.returncode == 2 and "the configuration's kinds (frame_recording) name none Stream lists" in \
        none.stderr
