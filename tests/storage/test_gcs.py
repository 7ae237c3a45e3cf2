"""GCSStorage joins the conformance suite, against a real gcp-storage-emulator."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.storage.conformance import CRLF_KEY, LONG_KEY, StorageConformance
from tests.support.gcs import list_objects, watch
from worker.storage.gcs.storage import GCSStorage

BACKEND = "gcs"


class TestGCS(StorageConformance):
    refused_keys = frozenset({CRLF_KEY, LONG_KEY})

    @pytest.fixture
    def leftovers(self, storage: GCSStorage) -> Callable[[], list[str]]:
        """Resumable upload sessions the storage opened that still accept bytes."""
        return watch(storage).open_sessions

    @pytest.fixture
    def raw_keys(self, gcs_emulator: str, bucket: str) -> Callable[[], list[str]]:
        return lambda: list_objects(gcs_emulator, bucket)
