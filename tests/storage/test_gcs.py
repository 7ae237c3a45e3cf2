"""GCSStorage joins the conformance suite, against a real gcp-storage-emulator."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.storage.conformance import CRLF_KEY, LONG_KEY, PREFIX, StorageConformance
from tests.support.gcs import create_bucket, gcs_storage, list_objects, watch
from worker.storage.gcs.storage import GCSStorage


class TestGCS(StorageConformance):
    refused_keys = frozenset({CRLF_KEY, LONG_KEY})

    @pytest.fixture
    def bucket(self, gcs_emulator: str) -> str:  # noqa: F811 - the fixture imported above
        return create_bucket(gcs_emulator)

    @pytest.fixture
    def storage(self, gcs_emulator: str, bucket: str) -> Iterator[GCSStorage]:  # noqa: F811
        storage = gcs_storage(gcs_emulator, bucket, PREFIX)
        yield storage
        storage.close()

    @pytest.fixture
    def leftovers(self, storage: GCSStorage) -> Callable[[], list[str]]:
        """Resumable upload sessions the storage opened that still accept bytes."""
        return watch(storage).open_sessions

    @pytest.fixture
    def raw_keys(self, gcs_emulator: str, bucket: str) -> Callable[[], list[str]]:  # noqa: F811
        return lambda: list_objects(gcs_emulator, bucket)
