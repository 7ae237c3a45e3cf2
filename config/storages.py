"""``[[storages]]``: where files go, in Stream's own external-storage schema (``name``, ``storage_type``,
``bucket``, ``path``, provider keys inside ``[storages.aws_s3]``…), so a Stream user can copy theirs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from config.types import Secret, Strict

LOCAL_STORAGE_NAME = "local"
DEFAULT_LOCAL_ROOT = "./archive"
STREAM_S3 = "stream-s3"  # Stream's built-in storage: "leave it with Stream"
BUILT_IN_TYPES = ("s3", "gcs", "abs", "local")
# How a write keeps off a key that already holds an object (`worker.storage.create_only`).
CreateOnly = Literal["condition", "head"]


class S3Options(Strict):
    """``[storages.aws_s3]``: Stream's S3Request, plus what AWS and S3-compatible stores need."""

    s3_region: str = Field(description="The bucket's region, e.g. us-east-1.")
    s3_api_key: Secret | None = Field(
        default=None, description="The access key ID; without it: the default AWS credential chain.")
    s3_secret: Secret | None = Field(default=None, description="The secret access key (with s3_api_key).")
    s3_custom_endpoint_url: str | None = Field(
        default=None, description="Any S3-compatible store (path-style addressing).")
    s3_role_arn: str | None = Field(
        default=None, description="Assume this role (STS) with the credentials above or the chain.")
    s3_external_id: str | None = Field(
        default=None, description="The role's ExternalId condition, if it has one.")
    s3_sse: Literal["AES256", "aws:kms"] | None = Field(default=None, description="Server-side encryption.")
    s3_sse_kms_key_id: str | None = Field(
        default=None, description='With s3_sse = "aws:kms": the key (default: the AWS-managed key).')
    s3_storage_class: str | None = Field(
        default=None, description="Every object's storage class, e.g. STANDARD_IA, GLACIER_IR, DEEP_ARCHIVE.")
    s3_tags: dict[str, str] = Field(default_factory=dict, description="Tags set on every object written.")
    s3_request_checksum: Literal["when_supported", "when_required"] = Field(
        default="when_supported",
        description="when_supported: boto3's default CRC checksums (AWS, moto); when_required: only where S3 "
                    "requires one, plus a Content-MD5 that S3-compatible stores (MinIO, R2, B2, Wasabi, Ceph) "
                    "accept.")

    @model_validator(mode="after")
    def _consistent(self) -> S3Options:
        if (self.s3_api_key is None) != (self.s3_secret is None):
            raise ValueError("s3_api_key and s3_secret must be given together")
        if self.s3_sse_kms_key_id and self.s3_sse != "aws:kms":
            raise ValueError("s3_sse_kms_key_id needs s3_sse = \"aws:kms\"")
        if self.s3_external_id and not self.s3_role_arn:
            raise ValueError("s3_external_id needs s3_role_arn")
        return self


class AzureOptions(Strict):
    """``[storages.azure_blob]``: Stream's AzureRequest (a service principal), and other ways in.

    One way to authenticate is used, in this order: ``abs_connection_string``; ``abs_sas_token``;
    ``abs_account_key``; a service principal (``abs_client_id`` + ``abs_client_secret`` +
    ``abs_tenant_id``); else managed identity / the environment (azure-identity's default chain).
    """

    abs_account_name: str | None = Field(
        default=None, description="The storage account (needed unless abs_connection_string or "
                                  "abs_endpoint_url names it).")
    abs_client_id: str | None = Field(default=None, description="The service principal's application (client) ID.")
    abs_client_secret: Secret | None = Field(default=None, description="The service principal's secret.")
    abs_tenant_id: str | None = Field(default=None, description="The service principal's tenant (directory) ID.")
    abs_connection_string: Secret | None = Field(
        default=None, description="A connection string, instead of the account name and a credential.")
    abs_account_key: Secret | None = Field(default=None, description="The storage account's shared key.")
    abs_sas_token: Secret | None = Field(default=None, description="A shared access signature.")
    abs_endpoint_url: str | None = Field(
        default=None, description="Emulators and sovereign clouds; default https://<account>.blob.core.windows.net.")
    abs_authority_host: str | None = Field(
        default=None, description="Entra ID authority for the service principal (sovereign clouds).")
    abs_server_side_copy: bool = Field(
        default=True, description="Let Azure fetch the source itself (Put Block From URL) when it can.")

    @model_validator(mode="after")
    def _consistent(self) -> AzureOptions:
        principal = (self.abs_client_id, self.abs_client_secret, self.abs_tenant_id)
        if any(principal) and not all(principal):
            raise ValueError("abs_client_id, abs_client_secret and abs_tenant_id must be given together")
        if not self.abs_connection_string and not self.abs_account_name and not self.abs_endpoint_url:
            raise ValueError("needs abs_account_name (or abs_connection_string, or abs_endpoint_url)")
        return self


class StorageConfig(Strict):
    """One ``[[storages]]`` entry: Stream's external-storage fields, plus ``local`` and plug-ins.

    Google Cloud Storage keys (``gcs_*``) sit in the storage's own table, as in Stream's schema.
    """

    name: str = Field(min_length=1, description='What routes call it; any name but "stream-s3".')
    storage_type: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="s3, gcs, abs, local or a plug-in's name.")
    bucket: str = Field(min_length=1, description="Bucket or container; for local: the root directory.")
    path: str = Field(default="", description="Prefix inside the bucket.")
    aws_s3: S3Options | None = Field(default=None, description='S3 keys (storage_type "s3" needs them).')
    azure_blob: AzureOptions | None = Field(
        default=None, description='Azure Blob Storage keys (storage_type "abs" needs them).')
    gcs_credentials: Secret | None = Field(
        default=None, description="The service-account JSON itself, as Stream takes it.")
    gcs_credentials_file: Path | None = Field(
        default=None, description="Or a path to it; neither: the environment's default credentials.")
    gcs_endpoint_url: str | None = Field(
        default=None, description="An emulator or compatible service (STORAGE_EMULATOR_HOST works too).")
    gcs_project: str | None = Field(
        default=None, description="The Google Cloud project (default: the credentials' own; objects need none).")
    options: dict[str, Any] = Field(default_factory=dict, description="A plug-in backend's own settings.")
    max_concurrency: Annotated[int, Field(strict=True, ge=1)] | None = Field(
        default=None,
        description="At most this many transfers into this storage at once, across every worker on every machine "
                    "(counted in the ledger); absent: no limit beyond the workers' own concurrency.")
    create_only: CreateOnly = Field(
        default="condition",
        description="How a write refuses a key that already holds an object (the archiver never writes over "
                    "other bytes): condition: the store itself refuses, atomically (S3 If-None-Match: *, GCS "
                    "ifGenerationMatch=0, Azure If-None-Match: *, local disk a hard link); head: a HEAD just "
                    "before the write, for a store that ignores or rejects the condition (`archiver storage "
                    "check` says which). head is weaker: a writer that slips in between is overwritten.")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name == STREAM_S3:
            raise ValueError(f"{STREAM_S3!r} is Stream's own storage and cannot be redefined")
        return name

    @field_validator("path")
    @classmethod
    def _relative_prefix(cls, path: str) -> str:
        parts = [p for p in path.replace("\\", "/").split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise ValueError("must not contain '.' or '..' segments")
        return "/".join(parts) + ("/" if parts else "")

    @model_validator(mode="after")
    def _provider_keys(self) -> StorageConfig:
        kind = self.storage_type
        if kind == "s3" and self.aws_s3 is None:
            raise ValueError("storage_type 's3' needs a [storages.aws_s3] table with s3_region")
        if kind == "abs" and self.azure_blob is None:
            raise ValueError("storage_type 'abs' needs a [storages.azure_blob] table")
        foreign = {
            "aws_s3": kind != "s3" and self.aws_s3 is not None,
            "azure_blob": kind != "abs" and self.azure_blob is not None,
            "gcs_*": kind != "gcs" and any((self.gcs_credentials, self.gcs_credentials_file,
                                            self.gcs_endpoint_url, self.gcs_project)),
            "options": kind in BUILT_IN_TYPES and bool(self.options),
        }
        for key, misplaced in foreign.items():
            if misplaced:
                raise ValueError(f"{key} does not belong to a storage of storage_type {kind!r}")
        if self.gcs_credentials and self.gcs_credentials_file:
            raise ValueError("give gcs_credentials or gcs_credentials_file, not both")
        return self


def storage_secrets(storage: StorageConfig) -> list[SecretStr]:
    """Every secret a storage entry holds (for scrubbing logs and error messages)."""
    values: list[SecretStr | None] = [storage.gcs_credentials]
    if storage.aws_s3 is not None:
        values += [storage.aws_s3.s3_api_key, storage.aws_s3.s3_secret]
    if storage.azure_blob is not None:
        az = storage.azure_blob
        values += [az.abs_client_secret, az.abs_connection_string, az.abs_account_key, az.abs_sas_token]
    return [v for v in values if v is not None]
