"""The audit log's fixtures: a local storage to export into, and entries noted in bulk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from worker.auditlog import note
from worker.ledger.store import Ledger
from worker.storage.local.storage import LocalStorage


@pytest.fixture
def disk(tmp_path: Path) -> LocalStorage:
    """Where the audit log is exported: local disk under tmp_path/exports."""
    return LocalStorage("disk", tmp_path / "exports")


def note_many(ledger: Ledger, count: int, start: int = 0) -> None:
    """`count` hold entries, call ids numbered from `start` (their order is the order noted)."""
    for n in range(start, start + count):
        note(ledger, "hold", call_cid=f"default:c{n}", reason=f"case {n}")


def exported_lines(storage: LocalStorage, key: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (storage.root / key).read_text().splitlines()]
