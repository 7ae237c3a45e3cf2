"""The import paths that plug-ins, deploy files and scripts name still work after the move into packages
(issue 14): each old path gives the very object of the new one."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys

import pytest

from tests.deploy.files import compose_services
from worker.storage.registry import BUILTIN


def load(path: str) -> object:
    """`module:attribute` or `module.attribute` → the object."""
    module, _, name = path.rpartition(":") if ":" in path else path.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize(("old", "new"), [
    ("worker.cli:main", "worker.edge.cli.app:main"),
    ("worker.storage.local:LocalStorage", "worker.storage.local.storage:LocalStorage"),
    ("worker.storage:Storage", "worker.storage.base:Storage"),
    ("worker.ledger:connect", "worker.ledger.connection:connect"),
    ("worker.checksums:Digests", "worker.storage.checksums:Digests"),
    ("config:load_settings", "config.settings:load_settings"),
])
def test_an_old_import_path_gives_the_same_object(old: str, new: str) -> None:
    assert load(old) is load(new)


def test_python_m_worker_cli_is_the_archiver_command() -> None:
    result = subprocess.run([sys.executable, "-m", "worker.cli", "--help"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout and "backfill" in result.stdout


@pytest.mark.parametrize("storage_type", sorted(BUILTIN))
def test_every_builtin_storage_path_names_a_storage_class(storage_type: str) -> None:
    from worker.storage import Storage  # noqa: PLC0415 - the old path, checked above

    found = load(BUILTIN[storage_type])
    assert isinstance(found, type) and issubclass(found, Storage), BUILTIN[storage_type]


def test_what_the_compose_python_health_checks_import_exists() -> None:
    """Every `from x import y` in a `python -c` health check of deploy/docker-compose.yml imports (that the
    checks pass and fail when they should is tests/deploy/test_healthchecks.py, against real processes)."""
    checks = [service["healthcheck"]["test"] for service in compose_services().values() if "healthcheck" in service]
    scripts = [test[test.index("-c") + 1] for test in checks if "python" in test and "-c" in test]
    imported = [f"{node.module}:{alias.name}" for script in scripts for node in ast.walk(ast.parse(script))
                if isinstance(node, ast.ImportFrom) for alias in node.names]
    assert "worker.ledger:connect" in imported and "config:load_settings" in imported
    for path in imported:
        assert callable(load(path)), path
