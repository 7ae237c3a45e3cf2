"""Every `archiver …` command line in the Dockerfile, Compose, Kubernetes and systemd files is real."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest
from typer.testing import CliRunner
from uvicorn.importer import import_from_string

from tests.deploy.files import ROOT, archiver_command_lines
from worker.edge.cli import service
from worker.edge.cli.app import app, main

COMMAND_LINES = archiver_command_lines()


def test_the_deployment_files_run_every_role() -> None:
    """Web, worker and scheduler are each started by every kind of deployment file."""
    for kind in ("Dockerfile", "compose", ".yaml", ".service"):
        roles = {argv[0] for where, argv in COMMAND_LINES if kind in where}
        expected = {"web"} if kind == "Dockerfile" else {"web", "worker", "scheduler"}
        assert expected <= roles, f"{kind}: runs {sorted(roles)}"


@pytest.mark.parametrize(("where", "argv"), COMMAND_LINES, ids=[where for where, _ in COMMAND_LINES])
def test_command_line_is_a_real_subcommand_with_real_options(where: str, argv: list[str]) -> None:
    """The subcommand exists and accepts the options given (--help is eager: parsing happens first)."""
    result = CliRunner().invoke(app, [*argv, "--help"])
    assert result.exit_code == 0, f"{where}: `archiver {' '.join(argv)}` is refused:\n{result.output}"
    assert "Usage:" in result.output


def test_archiver_console_script_is_declared() -> None:
    """pyproject.toml installs the `archiver` command the image's ENTRYPOINT and the units run."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["archiver"] == "worker.edge.cli.app:main"
    assert callable(main)


def test_the_old_entry_point_runs_the_same_command() -> None:
    """`worker.cli:main` and `python -m worker.cli`, which older installs and scripts name, are the CLI."""
    import worker.cli  # noqa: PLC0415 - the shim itself is what is tested

    assert worker.cli.main is main
    result = subprocess.run([sys.executable, "-m", "worker.cli", "transfers", "--help"], capture_output=True,
                            text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Look at the transfer ledger." in result.stdout


def test_uvicorn_factory_names_the_quiet_receiver() -> None:
    """`archiver web --workers N` hands uvicorn a factory string each process imports: it must resolve."""
    assert import_from_string(service.WEB_APP_FACTORY) is service.web_app_quiet
