"""LocalStorage joins the conformance suite: a root directory in tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.storage.conformance import LONG_NAME_KEY, StorageConformance
from worker.storage.local.storage import PARTIAL_SUFFIX

BACKEND = "local"


class TestLocal(StorageConformance):
    refused_keys = frozenset({LONG_NAME_KEY})

    @pytest.fixture
    def leftovers(self, root: Path) -> Callable[[], list[str]]:
        return lambda: [str(path) for path in root.rglob(f"*{PARTIAL_SUFFIX}")]

    @pytest.fixture
    def raw_keys(self, root: Path) -> Callable[[], list[str]]:
        return lambda: sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())
