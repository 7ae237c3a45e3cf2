"""Azure version-level immutability policies, legal holds and encryption scopes set on the upload
itself, against Azurite (through the fault proxy, which shows what went on the wire).

What Azurite 3.35.0 does with them (measured here): Put Blob and Put Block List accept
``x-ms-immutability-policy-until-date``, ``x-ms-immutability-policy-mode``, ``x-ms-legal-hold`` and
``x-ms-encryption-scope`` and keep none of them (Get Blob Properties shows no policy, no hold, no
scope); it has no blob versioning (no ``x-ms-version-id``); a container's properties never say
version-level immutability; Set Blob Immutability Policy and Set Blob Legal Hold answer 501
APINotImplemented; a "protected" blob is deleted on request. So the tests check the headers, that
`archiver storage check` names the container, and read a protection back from Get Blob Properties as
Azure answers it (a loopback endpoint with Azure's headers); Azure's refusals are mapped from its codes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from tests.storage.conformance import MiB, write_with_digests
from tests.support.azurite import ACCOUNT, ACCOUNT_KEY, TEST_TUNING, azure_storage, blob_names, container_client
from tests.support.faultproxy import FaultProxy, Recorded, answer, record
from worker.errors import ObjectLocked
from worker.storage.azure.storage import AzureStorage
from worker.storage.base import Retention
from worker.storage.probe import check_storage

BACKEND = "abs"
RETENTION = Retention(days=30, mode="Locked", holds=("legal",))


def through_proxy(proxy: FaultProxy, container: str, **options: Any) -> AzureStorage:
    """An Azure storage reaching Azurite through `proxy`, with the write-once keys `options`."""
    storage = azure_storage(f"{proxy.url}/{ACCOUNT}", container, "p/", **options)
    return storage


def protected_storage(proxy: FaultProxy, container: str) -> AzureStorage:
    storage = through_proxy(proxy, container)
    storage.protect_with(RETENTION, encryption_scope="recordings-cmk")
    return storage


def puts(rule_seen: list[Recorded], container: str) -> dict[str, Recorded]:
    """The PUTs to blobs, by kind: "blob" (Put Blob), "block", "blocklist"."""
    found: dict[str, Recorded] = {}
    for request in rule_seen:
        if f"/{container}/" not in request.target:
            continue
        kind = "blocklist" if "comp=blocklist" in request.target else "block" if "comp=block" in request.target \
            else "blob"
        found.setdefault(kind, request)
    return found


@pytest.fixture
def proxy(azurite: str) -> Iterator[FaultProxy]:  # in front of Azurite here, not moto_server
    with FaultProxy(azurite.rsplit("/", 1)[0]) as proxy:
        yield proxy


@pytest.mark.parametrize("size", [1000, 12 * MiB], ids=["put-blob", "blocks"])
def test_a_protected_commit_carries_the_policy_the_hold_and_the_scope(proxy: FaultProxy, container: str,
                                                                       size: int) -> None:
    """Put Blob, or Put Block List, carries the immutability policy (until now + the days, Locked) and
    the legal hold; every request that writes bytes carries the encryption scope."""
    seen = proxy.add(record(method="PUT"))
    storage = protected_storage(proxy, container)
    before = datetime.now(UTC).replace(microsecond=0)
    try:
        write_with_digests(storage, "rec.mp4", os.urandom(size))
    finally:
        storage.close()
    found = puts(seen.seen, container)
    commit = found["blob" if size == 1000 else "blocklist"]
    assert commit.headers["x-ms-immutability-policy-mode"] == "Locked"
    assert commit.headers["x-ms-legal-hold"] == "true"
    until = datetime.strptime(commit.headers["x-ms-immutability-policy-until-date"], "%a, %d %b %Y %H:%M:%S GMT")
    assert before + timedelta(days=30) <= until.replace(tzinfo=UTC) <= datetime.now(UTC) + timedelta(days=30)
    for request in found.values():
        assert request.headers["x-ms-encryption-scope"] == "recordings-cmk"
    if size != 1000:
        assert "x-ms-immutability-policy-mode" not in found["block"].headers  # a block is no blob yet


def test_an_unprotected_commit_carries_no_policy_but_the_scope(proxy: FaultProxy, container: str) -> None:
    """`protect=False` (the probes, the manifests): no policy, no hold; the encryption scope still."""
    seen = proxy.add(record(method="PUT"))
    storage = protected_storage(proxy, container)
    try:
        with storage.open_writer("probe.txt", content_type="text/plain", metadata={}, protect=False) as writer:
            writer.write(b"probe")
            writer.commit()
    finally:
        storage.close()
    request = puts(seen.seen, container)["blob"]
    assert "x-ms-immutability-policy-mode" not in request.headers and "x-ms-legal-hold" not in request.headers
    assert request.headers["x-ms-encryption-scope"] == "recordings-cmk"


def test_azurite_keeps_none_of_it(azurite: str, container: str) -> None:
    """Measured: the blob has no policy, no hold, no scope, no version; setting a policy is not
    implemented; the "protected" blob deletes."""
    storage = azure_storage(azurite, container, "p/")
    storage.protect_with(RETENTION, encryption_scope="recordings-cmk")
    try:
        stored, _ = write_with_digests(storage, "rec.mp4", os.urandom(1000))
        assert stored.version is None and str(storage.protection("rec.mp4")) == "no retention, no hold"
        with container_client(azurite, container) as client:
            props = client.get_blob_client("p/rec.mp4").get_blob_properties()
            assert (props.immutability_policy.expiry_time, props.has_legal_hold, props.encryption_scope) == \
                (None, None, None)
            with pytest.raises(HttpResponseError) as refused:
                client.get_blob_client("p/rec.mp4").set_legal_hold(True)
            assert refused.value.status_code == 501
        storage.delete("rec.mp4")
        assert blob_names(azurite, container) == []
    finally:
        storage.close()


@contextmanager
def properties_endpoint(headers: dict[str, str]) -> Iterator[str]:
    """A loopback "account" answering Get Blob / Container Properties (HEAD, GET) with Azure's headers."""

    class Answer(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            common = {"Content-Length": "0", "ETag": '"0x1"', "Last-Modified": "Mon, 07 Dec 2026 10:00:00 GMT",
                      "x-ms-blob-type": "BlockBlob", "x-ms-version": "2021-08-06"}
            for name, value in {**common, **headers}.items():
                self.send_header(name, value)
            self.end_headers()

        do_GET = do_HEAD

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{ACCOUNT}"
    finally:
        server.shutdown()
        server.server_close()


def test_protection_reads_get_blob_properties_as_azure_answers_it() -> None:
    """The version's policy (until, mode), its legal hold and its version id."""
    headers = {"x-ms-immutability-policy-until-date": "Fri, 07 Jan 2033 10:00:00 GMT",
               "x-ms-immutability-policy-mode": "locked", "x-ms-legal-hold": "true",
               "x-ms-version-id": "2026-12-07T10:00:00.0000000Z"}  # fmt: skip
    with properties_endpoint(headers) as endpoint:
        storage = azure_storage(endpoint, "c", "p/")
        try:
            found = storage.protection("rec.mp4")
        finally:
            storage.close()
    assert found.retain_until == datetime(2033, 1, 7, 10, tzinfo=UTC)
    assert (found.mode, found.holds, found.version) == ("locked", ("legal",), "2026-12-07T10:00:00.0000000Z")


def test_write_once_problem_reads_the_containers_version_level_immutability() -> None:
    """A container with version-level immutability support has no problem; one without is named."""
    with properties_endpoint({"x-ms-immutable-storage-with-versioning-enabled": "true"}) as endpoint:
        storage = azure_storage(endpoint, "worm", "p/")
        storage.protect_with(RETENTION)
        try:
            assert storage.write_once_problem() is None
        finally:
            storage.close()
    with properties_endpoint({}) as endpoint:
        storage = azure_storage(endpoint, "plain", "p/")
        storage.protect_with(RETENTION)
        try:
            assert "container plain has no version-level immutability" in (storage.write_once_problem() or "")
        finally:
            storage.close()


@pytest.mark.parametrize("code", ["BlobImmutableDueToPolicy", "BlobImmutableDueToLegalHold"])
def test_azure_refusing_for_a_policy_or_a_hold_is_object_locked(proxy: FaultProxy, container: str,
                                                                 code: str) -> None:
    """Azure's 409 for an overwrite or a delete a policy or a legal hold forbids is ObjectLocked."""
    storage = through_proxy(proxy, container)
    try:
        write_with_digests(storage, "rec.mp4", os.urandom(100))
        proxy.add(answer(409, code, "This operation is not permitted as the blob is immutable.", method="DELETE"))
        with pytest.raises(ObjectLocked, match=code):
            storage.delete_version("rec.mp4", "2026-12-07T10:00:00.0000000Z")
    finally:
        storage.close()


def test_check_names_a_container_without_version_level_immutability(azurite: str, container: str) -> None:
    """The check run by hand stops first, naming the container (Azurite has no such support), and writes
    nothing; the start-up check writes its probes without the policy and passes."""
    storage = azure_storage(azurite, container, "p/", abs_account_key=ACCOUNT_KEY, abs_immutability_days=30,
                            abs_immutability_mode="Unlocked", abs_legal_hold=True)
    try:
        report = check_storage(storage, TEST_TUNING, protect=True)
        assert (report.ok, report.reason) == (False, "retention_unsupported")
        assert f"container {container}" in (report.message or "") and blob_names(azurite, container) == []
        assert check_storage(storage, TEST_TUNING).ok
    finally:
        storage.close()
    assert blob_names(azurite, container) == []
