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
S3LockMode = Literal["GOVERNANCE", "COMPLIANCE"]
RetentionMode = Literal["Unlocked", "Locked"]  # GCS object retention, Azure immutability policies
Days = Annotated[int, Field(strict=True, ge=1)]


def check_retention(prefix: str, days: int | None, mode: str | None) -> None:
    """A retention period and its mode come together (`prefix`: the keys' common start, for the message).
    Raises ValueError."""
    if days is not None and mode is None:
        raise ValueError(f"{prefix}_days needs {prefix}_mode (which mode protects the objects for those days)")
    if mode is not None and days is None:
        raise ValueError(f"{prefix}_mode needs {prefix}_days (how many days each object is protected)")


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
    s3_object_lock_mode: S3LockMode | None = Field(
        default=None,
        description="S3 Object Lock on every object, set on its upload (PutObject, CreateMultipartUpload): GOVERNANCE "
                    "(users with s3:BypassGovernanceRetention may still delete it) or COMPLIANCE (nobody can, not even "
                    "the root user, until it expires). Needs s3_object_lock_days and a bucket created with Object "
                    "Lock (`archiver storage check` says).")
    s3_object_lock_days: Days | None = Field(
        default=None, description="With s3_object_lock_mode: each object is retained this many days from its upload.")
    s3_legal_hold: bool = Field(
        default=False,
        description="Put a legal hold on every object at upload (no expiry: it stays until someone with "
                    "s3:PutObjectLegalHold releases it). Needs a bucket with Object Lock.")
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
        check_retention("s3_object_lock", self.s3_object_lock_days, self.s3_object_lock_mode)
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
    abs_immutability_days: Days | None = Field(
        default=None,
        description="A version-level immutability policy on every blob, set on its upload (Put Blob, Put Block "
                    "List): kept this many days from then. Needs abs_immutability_mode and a container with "
                    "version-level immutability support (`archiver storage check` says).")
    abs_immutability_mode: RetentionMode | None = Field(
        default=None,
        description="With abs_immutability_days: Unlocked (the policy may still be shortened or removed by someone "
                    "allowed to) or Locked (it may only be extended).")
    abs_legal_hold: bool = Field(
        default=False, description="Put a legal hold on every blob at upload (stays until released). Needs a "
                                   "container with version-level immutability support.")
    abs_encryption_scope: str | None = Field(
        default=None,
        description="Encrypt every blob with this encryption scope of the account (its key may be yours, in Key "
                    "Vault) instead of the account's default.")

    @model_validator(mode="after")
    def _consistent(self) -> AzureOptions:
        principal = (self.abs_client_id, self.abs_client_secret, self.abs_tenant_id)
        if any(principal) and not all(principal):
            raise ValueError("abs_client_id, abs_client_secret and abs_tenant_id must be given together")
        if not self.abs_connection_string and not self.abs_account_name and not self.abs_endpoint_url:
            raise ValueError("needs abs_account_name (or abs_connection_string, or abs_endpoint_url)")
        check_retention("abs_immutability", self.abs_immutability_days, self.abs_immutability_mode)
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
    gcs_retention_days: Days | None = Field(
        default=None,
        description="Object retention on every object, set on its upload: kept this many days from then. Needs "
                    "gcs_retention_mode and a bucket with object retention enabled (`archiver storage check` says).")
    gcs_retention_mode: RetentionMode | None = Field(
        default=None,
        description="With gcs_retention_days: Unlocked (the retention may still be shortened or removed by someone "
                    "allowed to) or Locked (it may only be extended).")
    gcs_event_based_hold: bool = Field(
        default=False, description="Put an event-based hold on every object at upload (stays until released; "
                                   "releasing it starts the bucket retention policy's clock, if any).")
    gcs_temporary_hold: bool = Field(
        default=False, description="Put a temporary hold on every object at upload (stays until released).")
    gcs_kms_key_name: str | None = Field(
        default=None,
        description="Encrypt every object with this Cloud KMS key (CMEK), "
                    "projects/P/locations/L/keyRings/R/cryptoKeys/K, instead of Google's default keys.")
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
            "gcs_*": kind != "gcs" and any(getattr(self, name) for name in GCS_KEYS),
            "options": kind in BUILT_IN_TYPES and bool(self.options),
        }
        for key, misplaced in foreign.items():
            if misplaced:
                raise ValueError(f"{key} does not belong to a storage of storage_type {kind!r}")
        if self.gcs_credentials and self.gcs_credentials_file:
            raise ValueError("give gcs_credentials or gcs_credentials_file, not both")
        check_retention("gcs_retention", self.gcs_retention_days, self.gcs_retention_mode)
        return self


GCS_KEYS = tuple(name for name in StorageConfig.model_fields if name.startswith("gcs_"))


def storage_secrets(storage: StorageConfig) -> list[SecretStr]:
    """Every secret a storage entry holds (for scrubbing logs and error messages)."""
    values: list[SecretStr | None] = [storage.gcs_credentials]
    if storage.aws_s3 is not None:
        values += [storage.aws_s3.s3_api_key, storage.aws_s3.s3_secret]
    if storage.azure_blob is not None:
        az = storage.azure_blob
        values += [az.abs_client_secret, az.abs_connection_string, az.abs_account_key, az.abs_sas_token]
    return [v for v in values if v is not None]
