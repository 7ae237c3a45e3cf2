"""The boto3 client behind an S3 storage: credentials, checksum behaviour, timeouts.

Credentials, in this order: ``s3_api_key`` + ``s3_secret`` when given, else the default AWS chain
(environment, shared files, SSO, container and instance roles). With ``s3_role_arn`` those are only the
*source*: the client signs with the role's temporary credentials, fetched from STS (``AssumeRole``, with
``s3_external_id`` when set) on the first request and refreshed by botocore before they expire. STS is
reached at ``s3_custom_endpoint_url`` when one is set (moto, LocalStack and MinIO serve it there), else
at AWS's regional STS endpoint for ``s3_region``.

``s3_request_checksum`` sets botocore's ``request_checksum_calculation`` and
``response_checksum_validation`` (see `worker.storage.s3.storage` for what the writer then sends).

Building a client sends nothing to S3 or STS (the role's source credentials are looked up at the first
AssumeRole); an unusable role or credential shows at the first request, as `StorageRefused` with
reason ``credentials`` (see `worker.storage.s3.errors`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import boto3
import botocore.session
from botocore import exceptions as boto
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    CredentialResolver,
    Credentials,
    DeferredRefreshableCredentials,
    ReadOnlyCredentials,
)

from config import S3Options, TransferTuning
from worker.storage.errors import SDK_ATTEMPTS

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_SESSION_NAME_UNSAFE = re.compile(r"[^\w+=,.@-]")


def client_config(options: S3Options, tuning: TransferTuning, max_attempts: int) -> Config:
    """Path-style addressing, standard retries (`max_attempts` tries of a request), timeouts and pool
    from `tuning`, checksum mode."""
    return Config(
        region_name=options.s3_region,
        # No SHA-256 of every byte for SigV4 over plain HTTP either (botocore already skips it over
        # HTTPS): each request carries the part's CRC32C (or Content-MD5), which S3 checks; this halves
        # the worker's CPU per GiB (bench/).
        s3={"addressing_style": "path", "payload_signing_enabled": False},
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=tuning.connect_timeout.total_seconds(),
        read_timeout=tuning.read_timeout.total_seconds(),
        max_pool_connections=max(10, tuning.parts_in_flight + 2),
        request_checksum_calculation=options.s3_request_checksum,
        response_checksum_validation=options.s3_request_checksum,
    )


def presign_with_sigv4(client: S3Client) -> None:
    """Have `client` presign GetObject with SigV4 (``X-Amz-Expires``, at most 7 days). Without a
    ``signature_version`` in its config, botocore presigns with SigV2 (an absolute ``Expires``) in the
    regions that still accept it; newer regions and most S3-compatible stores refuse SigV2. The
    client's other requests are left as they are (the config could force SigV4 on them, and on S3
    Express or multi-region endpoints that would be wrong)."""
    hook = cast(Callable[..., None], _sigv4_query)  # the stubs type hooks as answering nothing; this one answers
    client.meta.events.register_first("choose-signer.s3.GetObject", hook, unique_id="archiver-presign-sigv4")


def _sigv4_query(signature_version: str, **_: Any) -> str | None:
    """The choose-signer hook: a SigV4 presign stays SigV4 (no answer: botocore's own choice)."""
    return "s3v4-query" if signature_version in ("v4-query", "s3v4-query") else None


def make_client(
    options: S3Options, tuning: TransferTuning, *, max_attempts: int = SDK_ATTEMPTS, name: str = "s3"
) -> S3Client:
    """A boto3 S3 client for `options` (`name`: the storage, for the role's session name)."""
    config = client_config(options, tuning, max_attempts)
    source = botocore.session.Session()
    if options.s3_api_key is not None and options.s3_secret is not None:
        source.set_credentials(options.s3_api_key.get_secret_value(), options.s3_secret.get_secret_value())
    session = source
    if options.s3_role_arn:
        session = botocore.session.Session()
        provider = _AssumedRole(assumed_role_credentials(source, options, config, name))
        session.register_component("credential_provider", CredentialResolver([provider]))
    return boto3.session.Session(botocore_session=session).client(
        "s3", region_name=options.s3_region, endpoint_url=options.s3_custom_endpoint_url, config=config
    )


def assumed_role_credentials(
    source: botocore.session.Session, options: S3Options, config: Config, name: str
) -> DeferredRefreshableCredentials:
    """Credentials of ``options.s3_role_arn``, assumed with `source`'s credentials on first use and
    refreshed before they expire. Fetching raises NoCredentialsError when `source` has none, and STS's
    ClientError (operation ``AssumeRole``) when STS refuses."""
    assert options.s3_role_arn is not None
    extra: dict[str, Any] = {"RoleSessionName": session_name(name)}
    if options.s3_external_id:
        extra["ExternalId"] = options.s3_external_id
    create = partial(source.create_client, region_name=options.s3_region,
                     endpoint_url=options.s3_custom_endpoint_url, config=config)  # fmt: skip
    fetcher = AssumeRoleCredentialFetcher(create, _SourceCredentials(source), options.s3_role_arn, extra_args=extra)
    return DeferredRefreshableCredentials(refresh_using=fetcher.fetch_credentials, method="assume-role")


def session_name(name: str) -> str:
    """``archiver-<storage name>``, cut to what STS accepts (2–64 of ``[\\w+=,.@-]``)."""
    return _SESSION_NAME_UNSAFE.sub("-", f"archiver-{name}")[:64]


class _SourceCredentials:
    """The source session's credentials, looked up when STS is first called (the chain may be slow)."""

    def __init__(self, session: botocore.session.Session) -> None:
        self._session = session

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        """Raises NoCredentialsError when no key is configured and the default chain finds none."""
        credentials: Credentials | None = self._session.get_credentials()
        if credentials is None:
            raise boto.NoCredentialsError()
        return credentials.get_frozen_credentials()


class _AssumedRole(CredentialProvider):
    """The only credential provider of the S3 client's session: the assumed role."""

    METHOD = "assume-role"
    CANONICAL_NAME = "archiver-assume-role"

    def __init__(self, credentials: DeferredRefreshableCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> DeferredRefreshableCredentials:
        return self._credentials
