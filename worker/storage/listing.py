"""What `archiver storage list` shows: each storage, where it writes, how it logs in, how it keeps its
objects (create-only mode, retention and holds, the encryption key), what routes there."""

from __future__ import annotations

from typing import Any

from config import ArchiveConfig, StorageConfig
from config.logging import redact_url
from worker.storage.base import Retention


def _endpoint(storage: StorageConfig) -> str | None:
    if storage.aws_s3 is not None:
        return storage.aws_s3.s3_custom_endpoint_url
    if storage.azure_blob is not None:
        return storage.azure_blob.abs_endpoint_url
    return storage.gcs_endpoint_url


def _credentials(storage: StorageConfig) -> str:
    """How the storage authenticates, never the secret itself."""
    if storage.aws_s3 is not None:
        s3 = storage.aws_s3
        way = "access key ***" if s3.s3_api_key else "default AWS credential chain"
        return f"{way}, assumes {s3.s3_role_arn}" if s3.s3_role_arn else way
    if storage.azure_blob is not None:
        az = storage.azure_blob
        for label, value in (("connection string ***", az.abs_connection_string), ("SAS token ***", az.abs_sas_token),
                             ("account key ***", az.abs_account_key)):
            if value:
                return label
        return f"service principal {az.abs_client_id} ***" if az.abs_client_id else "managed identity"
    if storage.storage_type == "gcs":
        if storage.gcs_credentials:
            return "service-account JSON ***"
        return f"service-account file {storage.gcs_credentials_file}" if storage.gcs_credentials_file \
            else "default credentials"
    return "-"


def _encryption(storage: StorageConfig) -> str | None:
    """The key the store encrypts with, when the settings name one (S3 SSE, GCS CMEK, Azure encryption scope)."""
    if storage.aws_s3 is not None and storage.aws_s3.s3_sse:
        key = storage.aws_s3.s3_sse_kms_key_id
        return f"SSE {storage.aws_s3.s3_sse}" + (f", key {key}" if key else "")
    if storage.azure_blob is not None and storage.azure_blob.abs_encryption_scope:
        return f"encryption scope {storage.azure_blob.abs_encryption_scope}"
    return f"CMEK {storage.gcs_kms_key_name}" if storage.gcs_kms_key_name else None


def describe_storages(archive: ArchiveConfig) -> list[dict[str, Any]]:
    """One row per storage, with the routing rules that lead to it (no secret in any field)."""
    rows = []
    for storage in archive.effective_storages():
        routes = [f"call_types.{t}" for t in archive.call_types if storage.name in archive.route_names(t)]
        if storage.name in archive.default_names():
            routes.insert(0, "default_storage")
        if archive.call_storage_key:
            routes.append(f"calls with custom.{archive.call_storage_key} = {storage.name!r}")
        endpoint = _endpoint(storage)
        rows.append({"name": storage.name, "storage_type": storage.storage_type, "bucket": storage.bucket,
                     "path": storage.path, "endpoint": redact_url(endpoint) if endpoint else None,
                     "credentials": _credentials(storage), "create_only": storage.create_only,
                     "retention": str(retention) if (retention := Retention.of(storage)) else None,
                     "encryption": _encryption(storage), "routes": routes})
    return rows
