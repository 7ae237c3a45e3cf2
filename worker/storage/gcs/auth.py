"""Which credentials, project and endpoint a GCS storage uses, decided once from its configuration.

In order:

- ``gcs_credentials``: the service-account JSON itself (as Stream takes it);
- ``gcs_credentials_file``: a path to that same JSON;
- neither, with ``gcs_endpoint_url``: anonymous (an emulator, or a compatible service that needs no
  Google login); configured credentials are still used with an endpoint, so their token flow runs
  against the JSON's ``token_uri``;
- neither: the library's own choice, i.e. anonymous when ``STORAGE_EMULATOR_HOST`` is set, else the
  environment's default credentials (``google.auth.default``: workload identity, metadata server,
  ``GOOGLE_APPLICATION_CREDENTIALS``).

The project is ``gcs_project``, else the credentials' own; object operations do not need one.
Service-account credentials are scoped to ``devstorage.read_write`` (write, read, delete objects).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.auth import exceptions as auth
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.oauth2 import service_account

from config import StorageConfig
from worker.errors import StorageRefused
from worker.storage.errors import Scrubber

SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",)
# google-auth's functions carry no annotations: typed entry points to them.
_anonymous: Callable[[], Any] = AnonymousCredentials
_from_info: Callable[..., Any] = service_account.Credentials.from_service_account_info
DEFAULT_ENDPOINT = "https://storage.googleapis.com"


@dataclass(frozen=True)
class Login:
    """Credentials (None: let the library choose), project, and the secrets they hold."""

    credentials: Any  # google.auth.credentials.Credentials (the library ships no types)
    project: str | None
    secrets: tuple[str, ...] = ()


def login(config: StorageConfig) -> Login:
    """The credentials `config` asks for. Raises StorageRefused (reason "credentials") when the
    configured JSON or file cannot be used; the message never holds the secret itself."""
    where = f"gcs storage {config.name!r}"
    if config.gcs_credentials is not None:
        return _from_json(config.gcs_credentials.get_secret_value(), config.gcs_project, where, "gcs_credentials")
    if config.gcs_credentials_file is not None:
        path = config.gcs_credentials_file
        try:
            text = path.read_text()
        except OSError as exc:
            raise StorageRefused(
                f"{where}: cannot read gcs_credentials_file {path}: {exc.strerror}", reason="credentials"
            ) from None
        return _from_json(text, config.gcs_project, where, f"gcs_credentials_file {path}")
    if config.gcs_endpoint_url:
        return Login(_anonymous(), config.gcs_project)
    return Login(None, config.gcs_project)


def _from_json(text: str, project: str | None, where: str, setting: str) -> Login:
    private_key = ""
    try:
        info = json.loads(text)
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
        private_key = str(info.get("private_key", ""))
        credentials = _from_info(info, scopes=SCOPES)
    except (ValueError, auth.GoogleAuthError) as exc:
        detail = Scrubber([text, private_key], queries=True)(f"{type(exc).__name__}: {exc}")
        raise StorageRefused(
            f"{where}: {setting} is not a usable service-account JSON ({detail})", reason="credentials"
        ) from None  # the chained error could carry the document itself
    return Login(credentials, project or _str(info.get("project_id")), (text, private_key))


def make_client(config: StorageConfig, credentials: Login) -> Any:
    """A `google.cloud.storage.Client` for `credentials`, at ``gcs_endpoint_url`` when set. Raises
    StorageRefused (reason "credentials") when default credentials were needed and none exist."""
    options = {"api_endpoint": config.gcs_endpoint_url} if config.gcs_endpoint_url else None
    arguments: dict[str, Any] = {"client_options": options}
    if credentials.credentials is not None:
        # An explicit None stops the library from asking google.auth.default() for a project.
        arguments.update(credentials=credentials.credentials, project=credentials.project)
    elif credentials.project:
        arguments["project"] = credentials.project
    try:
        return storage.Client(**arguments)
    except auth.DefaultCredentialsError as exc:
        raise StorageRefused(
            f"gcs storage {config.name!r}: no credentials configured (gcs_credentials, gcs_credentials_file) "
            f"and none found in the environment: {exc}",
            reason="credentials",
        ) from exc


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
