"""AzureStorage: Azure Blob Storage (``storage_type = "abs"``), through azure-storage-blob.

Objects are block blobs at ``<container>/<prefix><key>`` (``bucket`` is the container). How the
client authenticates and which URL it uses: `worker.storage.azure.auth`.

Writing streams. A blob no larger than ``multipart_threshold`` goes up as one Put Blob at commit,
with its MD5 as ``Content-MD5`` so that Azure checks the whole content. A larger one is staged in
``part_size`` blocks (Put Block, each with its own transactional MD5, checked by Azure) from a
thread pool with at most ``parts_in_flight`` in flight (``write`` blocks beyond that); commit is one
Put Block List carrying content type, metadata (``sha256`` included: Azure sets metadata at commit,
after the bytes) and, when the digests have one, the whole-content MD5 as the blob's ``Content-MD5``
property (Azure stores that one without checking it; the blocks were checked one by one). A transfer
asks for that whole-content MD5 only for a blob that goes up in one request (`native_checksum_for`):
a second MD5 of every byte cost 1.7 CPU-s per GiB, on cores the upload needs (bench/). Memory per writer:
about ``part_size × (parts_in_flight + 1)`` plus one incoming chunk, and at most
``2 × (multipart_threshold + part_size)`` for a moment at the commit of a single Put Blob.

Nothing is visible before commit: staged blocks are not a blob. An aborted writer deletes what it
staged only while no committed blob holds the name (a Delete Blob conditioned on
``If-Unmodified-Since`` 2000-01-01, which a committed blob always fails). When it was replacing an
existing blob, its blocks stay uncommitted until the next Put Block List to that name discards
them, or Azure does, seven days after the last Put Block; the same seven days apply if Azure
answers that an uncommitted blob does not exist (Azurite deletes it).

Resume (`resume_writer`, issue 18): a writer's `durable` state is its nonce and the ids of the blocks Azure
acknowledged (contiguous from block 1); each id names its block's CRC32C (`writer.piece_block_id`), computed
once before Put Block. A later attempt, in any process, reads the blob's uncommitted block list and resumes
when every block of the state is there with its size, and its id names the state's CRC32C for it; otherwise
(the blocks were discarded by an abort, a commit to the name, or Azure's seven days) it returns None. The
resumed writer stages the next block numbers (an id staged again replaces the block: blocks an earlier
attempt staged past the state are replaced), and commits the state's ids and the new ones in one Put Block
List with the same content type, metadata, If-None-Match and immutability policy as a fresh writer (all of
them are set at commit, so nothing from the first attempt carries over but the blocks).

Never overwrite (`worker.storage.create_only`): with ``create_only = "condition"`` Put Blob and Put
Block List carry ``If-None-Match: *`` and Azure answers 409 BlobAlreadyExists (KeyTaken) when the
name holds a blob; with ``"head"`` a Get Blob Properties comes right before either instead. Before
the first block is staged the name is checked in both modes, so that a taken one leaves no blocks.

Write-once (``abs_immutability_days`` + ``abs_immutability_mode``, ``abs_legal_hold``): a protected
Put Blob or Put Block List (a server-side copy's too) carries a version-level immutability policy
(``x-ms-immutability-policy-until-date`` = now + the days, ``-mode``) and ``x-ms-legal-hold``, so the
blob is protected from the moment it exists; that needs a container with version-level immutability
support (and so blob versioning), which `write_once_problem` reads from the container's properties.
Overwriting or deleting the current version makes it a previous version, still protected; deleting a
protected version (`delete_version`) Azure refuses (409 BlobImmutableDueToPolicy /
BlobImmutableDueToLegalHold: ObjectLocked). `protection` reads Get Blob Properties.
``abs_encryption_scope`` goes on every Put Blob, Put Block (From URL) and Put Block List, probes
included.

Differences from S3: metadata names must be C# identifiers (ASCII letters, digits, ``_``, not
starting with a digit: no hyphen; ValueError otherwise); Azure keeps their case. Values travel in
HTTP headers, so they are percent-encoded like S3's (`urllib.parse.quote` of ``%``, space, controls
and non-ASCII) and decoded by `stat`. A key with a path segment ending in ``.`` is refused
(ValueError): Azure drops such dots. A stat in a missing container is refused (``missing_bucket``).
Deleting removes the blob's snapshots too (with soft delete or versioning on the account, Azure
keeps its own copies).

Links (`link`): the blob's URL with a read-only SAS, signed with the account key or a user delegation
key (`worker.storage.azure.signing`); a storage logged in with a SAS token declares no links.

Holds and erasure (every version and snapshot): `worker.storage.azure.versions`.

Server-side copy (`copy_from_url`): `worker.storage.azure.copy`. Errors: `worker.storage.azure.errors`;
messages name the storage, container, key, Azure's error code and message, never a credential.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any, NoReturn, Self

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobClient, ContainerClient, StorageStreamDownloader

from config import StorageConfig, TransferTuning
from worker.errors import CopyRefused, KeyRefused
from worker.storage.azure import versions
from worker.storage.azure.auth import TokenCredential, make_container_client, secrets_of
from worker.storage.azure.container import AzureContainer
from worker.storage.azure.copy import copy_from_url
from worker.storage.azure.errors import error_code
from worker.storage.azure.signing import sas_url, signing_mode
from worker.storage.azure.writer import AzureWriter, encode_metadata
from worker.storage.base import (
    Capabilities,
    ObjectVersion,
    ObjectWriter,
    Protection,
    Retention,
    Storage,
    StoredObject,
    UploadState,
)
from worker.storage.checksums import b64
from worker.storage.create_only import guard
from worker.storage.errors import Scrubber
from worker.storage.keys import check_key, check_prefix, decode_header_metadata

MAX_KEY_CHARS = 1024


class AzureStorage(Storage):
    """Block blobs in one container, under one prefix."""

    storage_type = "abs"
    capabilities = Capabilities(multipart=True, server_side_copy=True, native_checksum="md5", legal_hold=True,
                                content_checksums=frozenset({"sha256"}))  # see __init__

    def __init__(
        self,
        name: str,
        client: ContainerClient,
        *,
        prefix: str = "",
        tuning: TransferTuning,
        secrets: Sequence[str] = (),
        server_side_copy: bool = True,
        credential: TokenCredential | None = None,
    ) -> None:
        """`secrets` are scrubbed from every error message; `credential` is closed with the storage.
        Raises ValueError for a bad prefix."""
        super().__init__(name)
        self.prefix, self.tuning = check_prefix(prefix), tuning
        self.container = AzureContainer(name, client, self.prefix, tuning, scrub=Scrubber(secrets, queries=True),
                                        credential=credential)  # fmt: skip
        self.signing = signing_mode(client, credential)
        # per instance, as abs_server_side_copy may turn the copy off, and a SAS token cannot sign links
        self.capabilities = Capabilities(multipart=True, server_side_copy=server_side_copy, native_checksum="md5",
                                         content_checksums=frozenset({"sha256"}),  # every commit sets metadata
                                         links=self.signing is not None, legal_hold=True)

    @classmethod
    def from_config(cls, config: StorageConfig, tuning: TransferTuning) -> Self:
        """Build the client from ``config.azure_blob``. Raises ValueError when that table is missing
        or unusable."""
        options = config.azure_blob
        if options is None:
            raise ValueError(f"storage {config.name!r}: storage_type 'abs' needs an azure_blob table")
        client, credential = make_container_client(options, config.bucket, tuning)
        storage = cls(
            config.name, client, prefix=config.path, tuning=tuning, secrets=secrets_of(options),
            server_side_copy=options.abs_server_side_copy, credential=credential,
        )  # fmt: skip
        storage.protect_with(Retention.of(config), encryption_scope=options.abs_encryption_scope)
        return storage

    def protect_with(self, retention: Retention | None, *, encryption_scope: str | None = None) -> None:
        """Every protected write from now on carries `retention`, and every write `encryption_scope`."""
        self.retention = self.container.retention = retention
        self.container.encryption_scope = encryption_scope

    def full_key(self, key: str) -> str:
        """``prefix + key``. Raises KeyRefused (a ValueError) for an illegal or over-long key, or a path segment
        ending in a dot."""
        full = self.prefix + check_key(key)
        if len(full) > MAX_KEY_CHARS:
            raise KeyRefused(f"Azure blob names are at most {MAX_KEY_CHARS} characters: {full[:60]!r}...")
        if any(segment.endswith(".") for segment in full.split("/")):
            raise KeyRefused(f"Azure drops the trailing dot of a path segment: {key!r}")
        return full

    def blob(self, full_key: str) -> BlobClient:
        return self.container.blob(full_key)

    def raise_mapped(self, exc: AzureError, action: str, key: str, *, missing: bool = False) -> NoReturn:
        """See `AzureContainer.raise_mapped`."""
        self.container.raise_mapped(exc, action, key, missing=missing)

    def open_writer(
        self, key: str, *, content_type: str, metadata: Mapping[str, str], size_hint: int | None = None,
        overwrite: bool = False, protect: bool = True,
    ) -> ObjectWriter:
        """Nothing is sent until a block is due or commit. Raises ValueError for an illegal key or
        metadata name; `size_hint` is not needed. Create-only unless `overwrite`; the immutability
        policy and legal hold unless not `protect`."""
        return AzureWriter(self.container, key, self.full_key(key), content_type, encode_metadata(metadata),
                           guard(self, key, overwrite=overwrite), protect=protect)

    def resume_writer(
        self, key: str, state: UploadState, *, content_type: str, metadata: Mapping[str, str],
        size_hint: int | None = None, overwrite: bool = False, protect: bool = True,
    ) -> ObjectWriter | None:
        """The staged blocks of `state`, checked against the uncommitted block list (see "Resume" above);
        None when Azure no longer holds them. Raises ValueError for an illegal key or metadata name,
        StorageRefused / StorageUnavailable when Azure cannot be asked."""
        full_key = self.full_key(key)
        writer = AzureWriter(self.container, key, full_key, content_type, encode_metadata(metadata),
                             guard(self, key, overwrite=overwrite), protect=protect)
        if not state.pieces:
            return None
        try:
            _, uncommitted = self.blob(full_key).get_block_list("uncommitted")
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            self.raise_mapped(exc, "list the blocks of", key)
        return writer if writer.take_over(state, {block.id: block.size for block in uncommitted}) else None

    def stat(self, key: str) -> StoredObject:
        """Get Blob Properties. Raises FileNotFoundError, ValueError, StorageRefused / StorageUnavailable."""
        try:
            props = self.blob(self.full_key(key)).get_blob_properties()
        except AzureError as exc:
            self.raise_mapped(exc, "stat", key, missing=True)
        metadata = decode_header_metadata(props.metadata or {})
        checksums = {"sha256": metadata["sha256"]} if "sha256" in metadata else {}
        if props.content_settings.content_md5:
            checksums["md5"] = b64(bytes(props.content_settings.content_md5))
        etag = (props.etag or "").strip('"') or None
        return StoredObject(key, props.size, metadata, props.content_settings.content_type, etag, checksums,
                            props.version_id or None)

    def protection(self, key: str) -> Protection:
        """The current version's immutability policy and legal hold (Get Blob Properties). Raises
        FileNotFoundError, ValueError, StorageRefused / StorageUnavailable."""
        try:
            props = self.blob(self.full_key(key)).get_blob_properties()
        except AzureError as exc:
            self.raise_mapped(exc, "read the retention of", key, missing=True)
        policy = props.immutability_policy
        mode = getattr(policy.policy_mode, "value", policy.policy_mode) if policy is not None else None
        return Protection(policy.expiry_time if policy is not None else None, str(mode) if mode else None,
                          ("legal",) if props.has_legal_hold else (), props.version_id or None)

    def write_once_problem(self) -> str | None:
        """The container must have version-level immutability support (Get Container Properties), when
        ``retention`` asks for anything. Raises StorageRefused / StorageUnavailable."""
        if self.retention is None:
            return None
        try:
            props = self.container.client.get_container_properties()
        except AzureError as exc:
            self.raise_mapped(exc, "read the properties of", "")
        if props.immutable_storage_with_versioning_enabled:
            return None
        return (f"container {self.container.name} has no version-level immutability support: Azure sets an "
                "immutability policy or a legal hold on a blob version only there (and needs blob versioning on)")

    def delete_version(self, key: str, version: str) -> None:
        """Delete exactly `version` of the blob. Raises ObjectLocked (a policy or legal hold protects it),
        ValueError, StorageRefused / StorageUnavailable."""
        try:
            self.blob(self.full_key(key)).delete_blob(version_id=version)
        except AzureError as exc:
            if error_code(exc) != "BlobNotFound":
                self.raise_mapped(exc, "delete a version of", key)

    def release_holds(self, key: str, version: str | None = None) -> None:
        """Set Blob Legal Hold false on `version` (default: the current one). Raises FileNotFoundError,
        ValueError, StorageRefused / StorageUnavailable."""
        extra: dict[str, Any] = {"version_id": version} if version else {}
        try:
            self.blob(self.full_key(key)).set_legal_hold(False, **extra)
        except AzureError as exc:
            self.raise_mapped(exc, "release the legal hold of", key, missing=True)

    def read(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Get Blob in 4 MiB ranges, yielded in chunks of at most `chunk_size`. Raises
        FileNotFoundError at once when there is none; StorageRefused / StorageUnavailable (also
        while iterating)."""
        try:
            downloader = self.blob(self.full_key(key)).download_blob()
        except AzureError as exc:
            self.raise_mapped(exc, "read", key, missing=True)
        return self._chunks(downloader, key, chunk_size)

    def _chunks(self, downloader: StorageStreamDownloader[bytes], key: str, chunk_size: int) -> Iterator[bytes]:
        try:
            for chunk in downloader.chunks():
                for start in range(0, len(chunk), chunk_size):
                    yield chunk[start : start + chunk_size]
        except AzureError as exc:
            self.raise_mapped(exc, "read", key)

    def delete(self, key: str) -> None:
        """Delete the blob and its snapshots; missing is fine. Raises ValueError, StorageRefused /
        StorageUnavailable (``missing_bucket`` when the container is gone)."""
        try:
            self.blob(self.full_key(key)).delete_blob(delete_snapshots="include")
        except AzureError as exc:
            if error_code(exc) != "BlobNotFound":
                self.raise_mapped(exc, "delete", key)

    def versions(self, key: str) -> list[ObjectVersion]:
        """The current blob, its versions and snapshots, with their holds and immutability policies:
        `worker.storage.azure.versions`. Raises ValueError, StorageRefused / StorageUnavailable."""
        return versions.list_versions(self, key)

    def erase(self, key: str) -> list[ObjectVersion]:
        """Delete the blob, its snapshots and every version. Raises ErasureRefused, ValueError,
        StorageRefused / StorageUnavailable."""
        return versions.erase(self, key)

    def set_legal_hold(self, key: str, on: bool) -> list[ObjectVersion]:
        """Set Legal Hold on the blob and each version (version-level immutability), read back. Raises
        FileNotFoundError, StorageRefused (also a store without legal holds), StorageUnavailable."""
        return versions.set_legal_hold(self, key, on)

    def copy_from_url(
        self, key: str, url: str, *, size: int, content_type: str, metadata: Mapping[str, str],
        overwrite: bool = False,
    ) -> StoredObject:
        """Put Block From URL in ``part_size`` ranges, then Put Block List: see
        `worker.storage.azure.copy`. Raises CopyRefused (nothing left behind), ValueError, KeyTaken,
        StorageRefused / StorageUnavailable."""
        if not self.capabilities.server_side_copy:
            raise CopyRefused(f"azure storage {self.name!r}: server-side copy is off (abs_server_side_copy)")
        full_key = self.full_key(key)
        return copy_from_url(self.container, key, full_key, url, size, content_type, encode_metadata(metadata),
                             guard(self, key, overwrite=overwrite))

    def link(self, key: str, ttl: timedelta) -> str:
        """The blob's URL with a read-only SAS valid for `ttl`: see `worker.storage.azure.signing`.
        Raises LinkUnavailable (a SAS-token login cannot sign), ValueError, StorageRefused /
        StorageUnavailable (the user delegation key refused or not given)."""
        return sas_url(self.container, key, self.full_key(key), ttl, self.signing)

    def native_checksum_for(self, size: int | None) -> str | None:
        """MD5 for a blob sent in one Put Blob (Azure checks it); none for a block blob, whose blocks
        carry their own MD5 (see the module docstring)."""
        return "md5" if size is not None and size <= self.tuning.multipart_threshold else None

    def describe(self) -> str:
        return f"{self.container.location}{self.prefix}"

    def close(self) -> None:
        """Stop the block-upload threads, the client's connections and the credential's. Idempotent."""
        self.container.close()
