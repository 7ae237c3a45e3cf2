"""The deployment files under test, loaded once, and the `archiver` command lines they run."""

from __future__ import annotations

import configparser
import json
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
SYSTEMD = DEPLOY / "systemd"
DOCS = ROOT / "docs"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def kubernetes_documents() -> list[tuple[Path, dict[str, Any]]]:
    """Every object of every manifest (not the kustomization), with its file."""
    found = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            found += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    return found


def kubernetes_object(kind: str, name: str) -> dict[str, Any]:
    matches = [doc for _, doc in kubernetes_documents() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = load_yaml(COMPOSE)["services"]
    return services


def systemd_unit(path: Path) -> configparser.ConfigParser:
    """A unit file read as INI (systemd allows repeated keys: the last one is kept here)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None, empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment, method-assign]  # systemd keys are case-sensitive
    parser.read_string(path.read_text(), source=str(path))
    return parser


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            found.append((instruction.upper(), rest.strip()))
    return found


def archiver_command_lines() -> list[tuple[str, list[str]]]:
    """(where, arguments after `archiver`) for every archiver command the deployment files run."""
    found: list[tuple[str, list[str]]] = []
    instructions = dict(dockerfile_instructions())
    assert json.loads(instructions["ENTRYPOINT"]) == ["archiver"]
    found.append(("Dockerfile CMD", json.loads(instructions["CMD"])))
    for name, service in compose_services().items():
        if "build" in service:  # the archiver's image: its entry point is `archiver`
            found.append((f"compose service {name}", list(service["command"])))
    for path, doc in kubernetes_documents():
        if doc["kind"] == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                assert "command" not in container, f"{path.name}: the image's entry point is `archiver`"
                found.append((f"{path.name} container {container['name']}", list(container["args"])))
    for path in sorted(SYSTEMD.glob("*.service")):
        argv = shlex.split(systemd_unit(path)["Service"]["ExecStart"])
        assert Path(argv[0]).name == "archiver", f"{path.name}: ExecStart does not run archiver"
        found.append((path.name, argv[1:]))
    return found


def duration_seconds(value: str | int) -> float:
    """A Compose / systemd duration ("10m", "30s", "1m30s", "600") in seconds."""
    if isinstance(value, int) or str(value).isdigit():
        return float(value)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|min)", str(value))
    assert parts and "".join(n + u for n, u in parts) == str(value).replace(" ", ""), f"not a duration: {value!r}"
    units = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in parts)


def markdown_anchors(path: Path) -> set[str]:
    """The anchors GitHub makes for a Markdown file's headings."""
    anchors, fenced = set(), False
    for line in path.read_text().splitlines():
        fenced ^= line.startswith("```")
        match = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*$", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match[1].lower())
            anchors.add(text.replace(" ", "-"))
    return anchors
