"""LocalStorage joins the conformance suite: a root directory in tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.storage.conformance import LONG_NAME_KEY, StorageConformance
from worker.storage.base import Storage
from worker.storage.local.storage import PARTIAL_SUFFIX, LocalStorage

BACKEND = "local"


class TestLocal(StorageConformance):
    refused_keys = frozenset({LONG_NAME_KEY})

    def another_writer(self, storage: Storage, key: str, data: bytes) -> None:
        """A process outside the archiver: one writer of the storage per key is all it expects (the
        next one removes the temporary files of the key's earlier, dead writers)."""
        assert isinstance(storage, LocalStorage)
        storage.path(key).write_bytes(data)

    @pytest.fixture
    def leftovers(self, root: Path) -> Callable[[], list[str]]:
        return lambda: [str(path) for path in root.rglob(f"*{PARTIAL_SUFFIX}")]

    @pytest.fixture
    def raw_keys(self, root: Path) -> Callable[[], list[str]]:
        return lambda: sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())
