"""scripts/image-test, which builds and runs the image for real (podman, as root), is wired into CI and
keeps the deploy names: it is too slow and needs root, so here only what can be checked without it."""

from __future__ import annotations

import os
import subprocess

from tests.deploy.files import ROOT, compose_services, dockerfile_instructions

SCRIPT = ROOT / "scripts" / "image-test"


def test_script_is_executable_bash_that_parses() -> None:
    """The script is executable and `bash -n` accepts it."""
    assert os.access(SCRIPT, os.X_OK)
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr


def test_ci_runs_it_after_the_main_tests() -> None:
    """.ci/run runs the README's test command first, unchanged, then scripts/image-test, without stdin."""
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    main = next(i for i, line in enumerate(lines) if line.startswith("scripts/test "))
    image = next(i for i, line in enumerate(lines) if line.startswith("scripts/image-test"))
    assert main < image and lines[image] == "scripts/image-test </dev/null"


def test_base_image_stand_ins_carry_the_names_the_deploy_files_use() -> None:
    """The stand-ins are tagged exactly as deploy/Dockerfile's FROM and compose's redis image name them
    (the deploy files keep their names; the stand-ins adapt)."""
    text = SCRIPT.read_text()
    stages = [args.split()[0] for name, args in dockerfile_instructions() if name == "FROM"]
    for image in {*stages, compose_services()["redis"]["image"]}:
        assert f'"docker.io/library/{image}"' in text, image
    assert 'IMAGE="localhost/stream-archiver:latest"' in text
    assert compose_services()["web"]["image"] == "stream-archiver:latest"
