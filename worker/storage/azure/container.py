"""AzureContainer: what an Azure storage, its writers and its server-side copies share.

The container's client (and the azure-identity credential it uses, closed with it), the prefix, where
it is for messages (never a credential: `worker.storage.azure.auth.public_location`), the block
threads, how an SDK error reads (`worker.storage.azure.errors`), what every request that writes
carries (``abs_encryption_scope``: `scope`; on a protected commit the immutability policy and legal
hold: `protected`), and the clean-up of blocks staged and never committed (see the module docstring
of `worker.storage.azure.storage`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NoReturn

import structlog
from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobImmutabilityPolicyMode, ContainerClient, ImmutabilityPolicy

from config import TransferTuning
from worker.storage.azure.auth import TokenCredential, public_location
from worker.storage.azure.errors import error_code, map_error
from worker.storage.base import Retention
from worker.storage.errors import Scrubber
from worker.storage.parts import PartPool

_NOT_SINCE = datetime(2000, 1, 1, tzinfo=UTC)  # every committed blob was modified after this

log = structlog.get_logger(__name__)


class AzureContainer:
    """One container and prefix as storage `storage` writes them (see the module docstring)."""

    def __init__(
        self,
        storage: str,
        client: ContainerClient,
        prefix: str,
        tuning: TransferTuning,
        *,
        scrub: Scrubber,
        credential: TokenCredential | None = None,
    ) -> None:
        self.storage, self.client, self.prefix, self.tuning = storage, client, prefix, tuning
        self.name = client.container_name
        self.location = public_location(client)
        self.scrub = scrub
        self.parts = PartPool(tuning.parts_in_flight, "abs-block")
        self._credential = credential
        self.retention: Retention | None = None  # the storage's (`AzureStorage`); a protected commit carries it
        self.encryption_scope: str | None = None  # abs_encryption_scope: on every request that writes

    def scope(self) -> dict[str, Any]:
        """``encryption_scope`` for a request that writes bytes or commits them, when one is set."""
        return {"encryption_scope": self.encryption_scope} if self.encryption_scope else {}

    def protected(self, now: datetime | None = None) -> dict[str, Any]:
        """The immutability policy (until now + the days) and legal hold a protected Put Blob or Put
        Block List carries for the storage's retention."""
        retention, found = self.retention, dict[str, Any]()
        if retention is None:
            return {}
        until = retention.until(now or datetime.now(UTC))
        if until is not None:
            mode = BlobImmutabilityPolicyMode(retention.mode)
            found["immutability_policy"] = ImmutabilityPolicy(expiry_time=until, policy_mode=mode)
        if "legal" in retention.holds:
            found["legal_hold"] = True
        return found

    def blob(self, full_key: str) -> BlobClient:
        return self.client.get_blob_client(full_key)

    def where(self, action: str, key: str) -> str:
        return f"azure storage {self.storage!r}: {action} {self.location}{self.prefix}{key}"

    def raise_mapped(self, exc: AzureError, action: str, key: str, *, missing: bool = False) -> NoReturn:
        """Raise the `worker.errors` exception for `exc` (`missing`: BlobNotFound means no key)."""
        raise map_error(exc, self.where(action, key), self.scrub, missing=missing) from exc

    def discard_staged(self, key: str, full_key: str) -> None:
        """Delete the uncommitted blocks staged under `full_key` unless a committed blob holds that
        name. Never raises: a failure is logged."""
        try:
            self.blob(full_key).delete_blob(if_unmodified_since=_NOT_SINCE)
        except (ResourceModifiedError, ResourceNotFoundError):
            pass  # a committed blob is there (its blocks wait for the next commit), or nothing is
        except AzureError as exc:
            log.warning("storage_abort_failed", storage=self.storage, key=key, reason=self.scrub(error_code(exc)))

    def close(self) -> None:
        """Stop the block-upload threads, the client's connections and the credential's. Idempotent."""
        self.parts.close()
        self.client.close()
        credential, self._credential = self._credential, None
        if credential is not None:
            credential.close()
