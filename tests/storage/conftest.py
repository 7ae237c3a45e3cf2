"""The fixtures every storage test module shares, defined once.

A module says which backend it tests with ``BACKEND = "s3"`` (or "gcs", "abs", "local"), and asks for:

- ``storage``: that backend's storage under ``prefix`` (``p/``; the conformance suite: `conformance.PREFIX`),
  in a fresh bucket of its emulator, built the way the service builds it, closed after the test;
- ``second_storage``: another instance on the same bucket and prefix (a resume in another worker process);
- ``bucket``: that fresh bucket (S3: in moto_server; GCS: in the emulator); Azure's is ``container``;
- ``proxy``: a `FaultProxy` in front of moto_server; ``root``: a local storage's root directory;
- ``azure_auth``: how an Azure storage logs in (the account key unless a module overrides it);
  ``gcs_auth``: how a GCS storage does (anonymously, as the emulator allows, unless overridden).

The emulators themselves (``moto_server``, ``gcs_emulator``, ``azurite``) are session fixtures of
tests/conftest.py; the HTTPS Azurite, the Entra token server and the GCS token server are imported here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mypy_boto3_s3 import S3Client

from tests.support import gcs, moto
from tests.support.azurite import azure_storage, azurite_tls, create_container  # noqa: F401 - fixtures
from tests.support.entra import entra, tls  # noqa: F401 - fixtures, used by name
from tests.support.faultproxy import FaultProxy
from tests.support.tokenserver import token_server  # noqa: F401 - a fixture, used by name
from worker.storage.base import Storage
from worker.storage.local import LocalStorage


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The test module's ``BACKEND``."""
    name = getattr(request.module, "BACKEND", None)
    if name not in ("s3", "gcs", "abs", "local"):
        raise pytest.UsageError(f"{request.module.__name__} needs BACKEND = 's3', 'gcs', 'abs' or 'local'")
    return str(name)


@pytest.fixture
def prefix() -> str:
    return "p/"


@pytest.fixture
def bucket(request: pytest.FixtureRequest, backend: str) -> str:
    """A fresh, empty bucket in moto_server (S3) or the GCS emulator."""
    if backend == "gcs":
        return gcs.create_bucket(request.getfixturevalue("gcs_emulator"))
    client: S3Client = request.getfixturevalue("moto_client")
    return moto.create_bucket(client)


@pytest.fixture
def container(azurite: str) -> str:
    """A fresh, empty container in Azurite."""
    return create_container(azurite)


@pytest.fixture
def proxy(moto_server: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server) as proxy:
        yield proxy


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def azure_auth() -> dict[str, Any]:
    """`tests.support.azurite.azure_storage`'s login keywords: none, the account key."""
    return {}


@pytest.fixture
def gcs_auth() -> dict[str, Any]:
    """`tests.support.gcs.gcs_storage`'s login keywords: none (anonymous)."""
    return {}


@pytest.fixture
def storage(request: pytest.FixtureRequest, backend: str, prefix: str) -> Iterator[Storage]:
    """The module's backend under `prefix`, in a fresh bucket (see the module docstring)."""
    built = build_storage(request, backend, prefix)
    yield built
    built.close()


@pytest.fixture
def second_storage(request: pytest.FixtureRequest, backend: str, prefix: str, storage: Storage) -> Iterator[Storage]:
    """Another instance of the module's backend on the same bucket and prefix as ``storage``: what another
    worker process would build (nothing shared with ``storage`` but the store)."""
    built = build_storage(request, backend, prefix)
    yield built
    built.close()


def build_storage(request: pytest.FixtureRequest, backend: str, prefix: str) -> Storage:
    """The module's backend under `prefix`, in the test's bucket (the ``storage`` fixture's)."""
    built: Storage
    if backend == "s3":
        built = moto.s3_storage(request.getfixturevalue("moto_server"), request.getfixturevalue("bucket"), prefix)
    elif backend == "gcs":
        built = gcs.gcs_storage(request.getfixturevalue("gcs_emulator"), request.getfixturevalue("bucket"), prefix,
                                **request.getfixturevalue("gcs_auth"))
    elif backend == "abs":
        endpoint, container = request.getfixturevalue("azurite"), request.getfixturevalue("container")
        built = azure_storage(endpoint, container, prefix, **request.getfixturevalue("azure_auth"))
    else:
        # fsynced every part_size (8 MiB, the tests' tuning), as `resume_checkpoint` may be set: the resume tests
        # take a durable state after one part, as they do from the other stores
        built = LocalStorage("disk", request.getfixturevalue("root"), prefix, sync_every=8 * 1024 * 1024)
    return built
