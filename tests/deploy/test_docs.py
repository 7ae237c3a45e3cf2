"""The deployment docs: the configuration reference is generated and current; links and JSON hold."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import BaseModel

from config import ArchiveConfig, Environment
from config.reference import REGENERATE, render_reference
from tests.deploy.files import DEPLOY, DOCS, ROOT, markdown_anchors

PAGES = [DOCS / "deployment.md", DOCS / "permissions.md", DOCS / "runbook.md", DOCS / "configuration.md",
         DEPLOY / "README.md"]


def test_configuration_reference_is_current() -> None:
    """docs/configuration.md is exactly what the generator makes from config/settings.py today."""
    current = (DOCS / "configuration.md").read_text()
    assert current == render_reference(), f"docs/configuration.md is out of date: run `{REGENERATE}`"


def models(annotation: Any) -> Iterator[type[BaseModel]]:
    """The models in a type (and in the types of their fields)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        for field in annotation.model_fields.values():
            yield from models(field.annotation)
    for arg in get_args(annotation):
        yield from models(arg)


def test_reference_names_every_setting() -> None:
    """Every environment variable and every key of every TOML table appears, in a table row."""
    reference = render_reference()
    for name in Environment.model_fields:
        assert f"| `{name.upper()}` |" in reference, name
    for model in set(models(ArchiveConfig)):
        for name in model.model_fields:
            assert f"| `{name}` |" in reference, f"{model.__name__}.{name}"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_resolve(page: Path) -> None:
    """Every relative link points at a file of the repository, and its #anchor at a heading there."""
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists() and ROOT in resolved.parents, f"{page.name}: broken link {target}"
        if anchor:
            assert anchor in markdown_anchors(resolved), f"{page.name}: {target}: no such heading"


def test_permission_documents_are_valid_json() -> None:
    """The IAM policy, lifecycle rule and Azure role in docs/permissions.md parse as JSON."""
    blocks = re.findall(r"```json\n(.*?)```", (DOCS / "permissions.md").read_text(), flags=re.DOTALL)
    assert len(blocks) >= 4
    for block in blocks:
        json.loads(block)
    policy = json.loads(blocks[0])
    actions: set[str] = set()
    for statement in policy["Statement"]:
        actions.update([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    assert actions == {"s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "s3:DeleteObject",
                       "s3:ListBucket", "s3:ListBucketMultipartUploads"}
    lifecycle = json.loads(blocks[2])
    days = lifecycle["Rules"][0]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
    assert 1 <= days <= 7
