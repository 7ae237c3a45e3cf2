"""GCSStorage joins the conformance suite, against a real gcp-storage-emulator; its links, signed with a
service-account key (anonymous credentials cannot sign: test_gcs_specific.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.storage.conformance import CRLF_KEY, LONG_KEY, LinkConformance, ProtectionConformance, StorageConformance
from tests.support.gcs import list_objects, service_account_json, watch
from tests.support.tokenserver import TokenServer
from worker.storage.gcs.storage import GCSStorage

BACKEND = "gcs"


class TestGCS(StorageConformance):
    refused_keys = frozenset({CRLF_KEY, LONG_KEY})
    resume_blind_to_crc32c = resume_blind_to_sizes = (
        "GCS keeps no checksum nor boundary per chunk of a resumable session: its status query says how many "
        "bytes it holds, nothing more (the commit's whole-object CRC32C check covers them)")

    @pytest.fixture
    def leftovers(self, storage: GCSStorage) -> Callable[[], list[str]]:
        """Resumable upload sessions the storage opened that still accept bytes."""
        return watch(storage).open_sessions

    @pytest.fixture
    def raw_keys(self, gcs_emulator: str, bucket: str) -> Callable[[], list[str]]:
        return lambda: list_objects(gcs_emulator, bucket)


class TestGCSLinks(LinkConformance):
    """Logged in with a service-account key (its tokens from a local token endpoint): V4 signed URLs."""

    # gcp-storage-emulator serves /<bucket>/<object> ignoring X-Goog-Signature and X-Goog-Expires: no refusal
    # can be shown here; test_gcs_specific.py checks the signature with the service account's public key.
    expiry_param = "X-Goog-Expires"

    @pytest.fixture
    def gcs_auth(self, token_server: TokenServer) -> dict[str, Any]:
        return {"gcs_credentials": service_account_json(token_server.url)[0]}


class TestGCSProtection(ProtectionConformance):
    """A commit's version, unprotected probes removed entirely, protection read back (tests/storage/conformance.py)."""
