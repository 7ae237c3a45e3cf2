"""AzureStorage joins the conformance suite, against a real Azurite (authenticated by a SAS token); its
links, signed with the account key (a SAS-token login cannot sign: test_azure_specific.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.storage.conformance import (
    DOT_ENDED_KEYS,
    LONG_KEY,
    LinkConformance,
    ProtectionConformance,
    StorageConformance,
)
from tests.support.azurite import (
    ACCOUNT_KEY,
    account_sas,
    blob_names,
    uncommitted,
)

BACKEND = "abs"


class TestAzure(StorageConformance):
    refused_keys = DOT_ENDED_KEYS | {LONG_KEY}

    @pytest.fixture
    def sas(self) -> str:
        return account_sas()

    @pytest.fixture
    def azure_auth(self, sas: str) -> dict[str, Any]:
        return {"abs_sas_token": sas}

    @pytest.fixture
    def leftovers(self, azurite: str, container: str) -> Callable[[], list[str]]:
        return lambda: uncommitted(azurite, container)

    @pytest.fixture
    def raw_keys(self, azurite: str, container: str) -> Callable[[], list[str]]:
        return lambda: blob_names(azurite, container)

    @pytest.fixture
    def secrets(self, sas: str) -> list[str]:
        return [ACCOUNT_KEY, sas]


class TestAzureLinks(LinkConformance):
    """Logged in with the account key (the module's default): a service SAS, checked by Azurite."""


class TestAzureProtection(ProtectionConformance):
    """A commit's version, unprotected probes removed entirely, protection read back (tests/storage/conformance.py)."""
