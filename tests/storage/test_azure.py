"""AzureStorage joins the conformance suite, against a real Azurite (authenticated by a SAS token)."""

# ruff: noqa: F811 - the fixtures imported by name (azurite, entra, ...) are the tests' parameters

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.storage.conformance import DOT_ENDED_KEYS, LONG_KEY, PREFIX, StorageConformance
from tests.support.azurite import (
    ACCOUNT_KEY,
    account_sas,
    azure_storage,
    blob_names,
    create_container,
    uncommitted,
)
from worker.storage.azure.storage import AzureStorage


class TestAzure(StorageConformance):
    refused_keys = DOT_ENDED_KEYS | {LONG_KEY}

    @pytest.fixture
    def container(self, azurite: str) -> str:
        return create_container(azurite)

    @pytest.fixture
    def sas(self) -> str:
        return account_sas()

    @pytest.fixture
    def storage(self, azurite: str, container: str, sas: str) -> Iterator[AzureStorage]:
        storage = azure_storage(azurite, container, PREFIX, abs_sas_token=sas)
        yield storage
        storage.close()

    @pytest.fixture
    def leftovers(self, azurite: str, container: str) -> Callable[[], list[str]]:
        return lambda: uncommitted(azurite, container)

    @pytest.fixture
    def raw_keys(self, azurite: str, container: str) -> Callable[[], list[str]]:
        return lambda: blob_names(azurite, container)

    @pytest.fixture
    def secrets(self, sas: str) -> list[str]:
        return [ACCOUNT_KEY, sas]
