"""What only AzureStorage does: each way to authenticate, blocks and MD5s, abort and copy on Azure,
error mapping, and no secret in any message. Against a real Azurite; the Entra ID flows against
Azurite over HTTPS (``--oauth basic``) and `tests.support.entra`."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.storage.blob import BlobClient

from config.storages import AzureOptions
from tests.storage.conformance import write, write_with_digests
from tests.support.azurite import (
    ACCOUNT,
    ACCOUNT_KEY,
    TEST_TUNING,
    account_sas,
    azure_config,
    azure_storage,
    blob_names,
    connection_string,
    container_client,
    container_sas,
    create_container,
    error_endpoint,
    uncommitted,
)
from tests.support.entra import CLIENT_ID, CLIENT_SECRET, TENANT, TokenServer, principal
from tests.support.ports import free_port
from worker.errors import CopyRefused, KeyTaken, LinkUnavailable, StorageRefused, StorageUnavailable, VerificationFailed
from worker.storage.azure.auth import make_container_client
from worker.storage.azure.storage import AzureStorage
from worker.storage.checksums import Digests, md5_b64

BACKEND = "abs"

MiB = 1024 * 1024


def operations(storage: AzureStorage) -> dict[str, Callable[[], object]]:
    """stat, read, delete and a one-byte write of one key."""
    return {"stat": lambda: storage.stat("k.mp4"), "read": lambda: storage.read("k.mp4"),
            "delete": lambda: storage.delete("k.mp4"), "write": lambda: write(storage, "k.mp4", [b"x"])}  # fmt: skip


AUTH_WAYS: dict[str, Callable[[str, str], dict[str, Any]]] = {
    "connection string": lambda endpoint, _: {"abs_connection_string": connection_string(endpoint)},
    "account key": lambda *_: {"abs_account_key": ACCOUNT_KEY},
    "container SAS": lambda _, container: {"abs_sas_token": container_sas(container)},
    "account SAS": lambda *_: {"abs_sas_token": "?" + account_sas()},
}


@pytest.mark.parametrize("way", AUTH_WAYS)
def test_each_shared_key_or_sas_way_round_trips(azurite: str, container: str, way: str) -> None:
    """Connection string, account key, container SAS and account SAS each write, stat, read, delete."""
    storage = azure_storage(azurite, container, "p/", **AUTH_WAYS[way](azurite, container))
    write(storage, "a.mp4", [b"hello"], note="x")
    assert storage.stat("a.mp4").metadata == {"note": "x"}
    assert b"".join(storage.read("a.mp4")) == b"hello"
    storage.delete("a.mp4")
    assert blob_names(azurite, container) == []
    storage.close()


@pytest.mark.parametrize("secret", ["key", "sas"])
def test_bad_credentials_are_refused_without_the_secret(azurite: str, container: str, secret: str) -> None:
    """A wrong account key or an expired SAS: StorageRefused "credentials", the secret nowhere."""
    value = base64.b64encode(os.urandom(64)).decode() if secret == "key" else account_sas(hours=-1)
    auth: dict[str, Any] = {"abs_account_key" if secret == "key" else "abs_sas_token": value}
    storage = azure_storage(azurite, container, **auth)
    for attempt in operations(storage).values():
        with pytest.raises(StorageRefused) as caught:
            attempt()
        assert caught.value.reason == "credentials" and "abs-test" in str(caught.value)
        assert value not in str(caught.value) and "sig=" not in str(caught.value)


def test_sas_without_write_permission_is_permission(azurite: str, container: str) -> None:
    """A read-only SAS reads (FileNotFoundError for a missing key) but a write is "permission"."""
    storage = azure_storage(azurite, container, abs_sas_token=container_sas(container, read=True))
    with pytest.raises(FileNotFoundError):
        storage.stat("k.mp4")
    with pytest.raises(StorageRefused) as caught:
        write(storage, "k.mp4", [b"x"])
    assert caught.value.reason == "permission" and "AuthorizationPermissionMismatch" in str(caught.value)


def test_missing_container_is_missing_bucket(azurite: str) -> None:
    """stat, read, write and delete in a missing container: StorageRefused "missing_bucket"."""
    storage = azure_storage(azurite, "no-such-container", "p/")
    for attempt in operations(storage).values():
        with pytest.raises(StorageRefused) as caught:
            attempt()
        assert caught.value.reason == "missing_bucket" and "no-such-container" in str(caught.value)


def test_unreachable_endpoint_is_unavailable_fast() -> None:
    """A closed port: StorageUnavailable "unreachable" within seconds, the SAS token nowhere."""
    sas = account_sas()
    options = AzureOptions(abs_account_name=ACCOUNT, abs_endpoint_url=f"http://127.0.0.1:{free_port()}/{ACCOUNT}",
                           abs_sas_token=sas)  # fmt: skip
    client, _ = make_container_client(options, "c", TEST_TUNING, retries=0)
    storage = AzureStorage("down", client, tuning=TEST_TUNING, secrets=[sas])
    started = time.monotonic()
    for attempt in operations(storage).values():
        with pytest.raises(StorageUnavailable, match="down") as caught:
            attempt()
        assert caught.value.reason == "unreachable" and "sig=" not in str(caught.value)
    assert time.monotonic() - started < 5
    storage.close()


@pytest.mark.parametrize(("status", "code", "reason"), [(503, "ServerBusy", "throttled"),
                                                        (500, "InternalError", "server_error")])  # fmt: skip
def test_busy_and_failing_service_is_unavailable(status: int, code: str, reason: str) -> None:
    """503 ServerBusy is "throttled", 500 InternalError "server_error": both StorageUnavailable."""
    with error_endpoint(status, code) as endpoint:
        options = AzureOptions(abs_endpoint_url=endpoint, abs_account_key=ACCOUNT_KEY)
        client, _ = make_container_client(options, "c", TEST_TUNING, retries=0)
        storage = AzureStorage("busy", client, tuning=TEST_TUNING)
        with pytest.raises(StorageUnavailable, match=code) as caught:
            storage.stat("k.mp4")
        assert caught.value.reason == reason
        storage.close()


def test_blocks_are_staged_with_bounded_concurrency(
    azurite: str,
    container: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """23 MiB with 5 MiB blocks and 3 in flight: 5 blocks, never more than 3 at once (and more than
    one), committed once with the digests' MD5 as the blob's Content-MD5 and its SHA-256 as metadata."""
    running, peak, lock, original = [0], [0], threading.Lock(), BlobClient.stage_block

    def stage_block(self: BlobClient, *args: Any, **kwargs: Any) -> dict[str, Any]:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            time.sleep(0.05)  # long enough for the writer to fill the other slots
            return original(self, *args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(BlobClient, "stage_block", stage_block)
    storage = azure_storage(azurite, container, "p/", tuning=TEST_TUNING.model_copy(update={"parts_in_flight": 3}))
    data = os.urandom(23 * MiB)
    _, digests = write_with_digests(storage, "big.mp4", data)
    committed, pending = container_client(azurite, container).get_blob_client("p/big.mp4").get_block_list("all")
    assert [block.size for block in committed] == [5 * MiB] * 4 + [3 * MiB] and pending == []
    assert 1 < peak[0] <= 3
    stored = storage.stat("big.mp4")
    assert stored.checksums == {"md5": digests.md5, "sha256": digests.sha256} and digests.md5 == md5_b64(data)
    storage.close()


def test_small_object_is_one_put_blob(storage: AzureStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    """At the threshold (5 MiB) nothing is staged: one Put Blob carrying the MD5 and SHA-256."""
    staged: list[str] = []
    monkeypatch.setattr(BlobClient, "stage_block", lambda _self, block_id, *a, **k: staged.append(block_id))
    _, digests = write_with_digests(storage, "small.mp4", os.urandom(5 * MiB))
    assert staged == []
    assert storage.stat("small.mp4").checksums == {"md5": digests.md5, "sha256": digests.sha256}


def test_rejected_md5_is_verification_failed(storage: AzureStorage, azurite: str, container: str) -> None:
    """Digests whose MD5 is not the bytes': Azure refuses the Put Blob, nothing becomes visible."""
    writer = storage.open_writer("bad.mp4", content_type="video/mp4", metadata={})
    writer.write(b"abc")
    with pytest.raises(VerificationFailed, match="MD5"):
        writer.commit(Digests(size=3, sha256="0" * 64, md5=md5_b64(b"abd")))
    assert blob_names(azurite, container) == []


def test_abort_keeps_the_blob_it_would_replace(storage: AzureStorage, azurite: str, container: str) -> None:
    """Aborting a replacement after blocks were staged leaves the old blob whole; its leftover blocks
    are discarded by the next Put Block List to that name."""
    write(storage, "k.mp4", [b"old"], v="1")
    with storage.open_writer("k.mp4", content_type="video/mp4", metadata={}, overwrite=True) as writer:
        writer.write(os.urandom(11 * MiB))
        writer.abort()
    assert b"".join(storage.read("k.mp4")) == b"old" and storage.stat("k.mp4").metadata == {"v": "1"}
    assert uncommitted(azurite, container) == ["p/k.mp4"]  # left for Azure (7 days) or the next commit
    new = os.urandom(6 * MiB)
    write(storage, "k.mp4", [new], overwrite=True)
    assert uncommitted(azurite, container) == [] and b"".join(storage.read("k.mp4")) == new


def test_copy_from_url_is_refused_by_azurite_and_leaves_nothing(
    storage: AzureStorage,
    azurite: str,
    container: str,
) -> None:
    """Azurite does not implement Put Block From URL (501): CopyRefused, no blob, no staged block,
    and the signed URL's query string in no message."""
    assert storage.capabilities.server_side_copy
    url = "http://127.0.0.1:9/calls/rec.mp4?X-Amz-Signature=source-signature-do-not-print"
    with pytest.raises(CopyRefused) as caught:
        storage.copy_from_url("c.mp4", url, size=11 * MiB, content_type="video/mp4", metadata={"a": "b"})
    message = str(caught.value)
    assert "501" in message and "http://127.0.0.1:9/calls/rec.mp4" in message and "signature" not in message
    assert blob_names(azurite, container) == [] and uncommitted(azurite, container) == []


def test_copy_into_a_taken_name_is_key_taken_before_any_block_is_staged(
    storage: AzureStorage, azurite: str, container: str
) -> None:
    """Create-only: a copy into a name a blob holds raises KeyTaken before staging anything (not
    CopyRefused: streaming would be refused the same way); the blob stays whole, no block is staged."""
    write(storage, "c.mp4", [b"already there"])
    url = "http://127.0.0.1:9/calls/rec.mp4?X-Amz-Signature=source-signature-do-not-print"
    with pytest.raises(KeyTaken) as caught:
        storage.copy_from_url("c.mp4", url, size=11 * MiB, content_type="video/mp4", metadata={})
    assert caught.value.reason == "key_taken"
    assert b"".join(storage.read("c.mp4")) == b"already there" and uncommitted(azurite, container) == []


def test_copy_is_refused_without_a_request_when_turned_off(azurite: str, container: str) -> None:
    """abs_server_side_copy = false: the capability says so and copy_from_url refuses at once."""
    storage = azure_storage(azurite, container, abs_account_key=ACCOUNT_KEY, abs_server_side_copy=False)
    assert not storage.capabilities.server_side_copy and AzureStorage.capabilities.server_side_copy
    with pytest.raises(CopyRefused, match="abs_server_side_copy"):
        storage.copy_from_url("c.mp4", "https://cdn/x", size=1, content_type="video/mp4", metadata={})


def test_metadata_names_and_values(storage: AzureStorage, azurite: str, container: str) -> None:
    """Names must be C# identifiers (ValueError before any request); values go percent-encoded."""
    for bad in ("call-cid", "1st", "été"):
        with pytest.raises(ValueError, match="metadata"):
            storage.open_writer("m.mp4", content_type="video/mp4", metadata={bad: "x"})
    write(storage, "m.mp4", [b"x"], Call_Cid="été 100%")
    raw = container_client(azurite, container).get_blob_client("p/m.mp4").get_blob_properties().metadata
    assert raw == {"Call_Cid": "%C3%A9t%C3%A9%20100%25"}
    assert storage.stat("m.mp4").metadata == {"Call_Cid": "été 100%"}


def test_keys_azure_would_alter_are_refused(storage: AzureStorage) -> None:
    """A path segment ending in a dot (Azure drops it) or a name over 1024 characters: ValueError."""
    for key in ("name.", "dir./file.mp4", "x" * 1030):
        with pytest.raises(ValueError):
            storage.stat(key)


def test_describe_names_the_place_never_a_secret(azurite: str, container: str) -> None:
    """Public cloud: abs://account/container/prefix; an endpoint: its URL; no key nor SAS in either."""
    cloud = AzureStorage.from_config(
        azure_config(azurite, "videos", "rec/", abs_account_key=ACCOUNT_KEY).model_copy(
            update={"azure_blob": AzureOptions(abs_account_name="myacct", abs_account_key=ACCOUNT_KEY)}
        ), TEST_TUNING)  # fmt: skip
    assert cloud.describe() == "abs://myacct/videos/rec/"
    sas = account_sas()
    local = azure_storage(azurite, container, "rec/", abs_connection_string=connection_string(azurite)
                          + f"SharedAccessSignature={sas};")  # fmt: skip
    assert local.describe() == f"{azurite}/{container}/rec/"
    assert ACCOUNT_KEY not in cloud.describe() + local.describe() and "sig=" not in local.describe()


def test_memory_stays_bounded(storage: AzureStorage) -> None:
    """40 MiB and 80 MiB in 1 MiB chunks: peak Python memory under part_size × (parts_in_flight + 1) +
    3 MiB (the SDK's copies of a request, the create-only HEAD's answer), and not growing with twice the
    bytes: memory does not grow with the object."""
    bound = TEST_TUNING.part_size * (TEST_TUNING.parts_in_flight + 1) + 3 * MiB
    chunk = os.urandom(MiB)
    peaks = []
    for chunks in (40, 80):
        tracemalloc.start()
        try:
            write(storage, f"mem-{chunks}.mp4", (bytes(bytearray(chunk)) for _ in range(chunks)))
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert storage.stat(f"mem-{chunks}.mp4").size == chunks * MiB
    assert max(peaks) < bound, f"peaks {[round(p / MiB, 1) for p in peaks]} MiB"
    # Twice the bytes, not twice the memory: 40 MiB more written may move the peak by a chunk or two
    # (which part is in flight when the peak is taken), never by anything like the 40 MiB.
    assert peaks[1] - peaks[0] < 4 * MiB, f"peaks {[round(p / MiB, 1) for p in peaks]} MiB"


# --- Entra ID: a service principal and a managed identity, against Azurite over HTTPS ---------------


def test_service_principal_gets_a_token_and_azurite_accepts_it(entra: TokenServer, azurite_tls: str) -> None:
    """ClientSecretCredential asks the authority for a storage token (tenant, client, scope) and
    Azurite accepts it: a blob written and read back with the bearer token alone."""
    storage = azure_storage(azurite_tls, create_container(azurite_tls), "p/", **principal(entra))
    write(storage, "sp.mp4", [b"by principal"])
    assert b"".join(storage.read("sp.mp4")) == b"by principal"
    asked = [r for r in entra.requests if r["flow"] == "client_credentials"]
    assert asked and asked[0]["tenant"] == TENANT and asked[0]["client_id"] == CLIENT_ID
    assert asked[0]["scope"] == "https://storage.azure.com/.default"
    storage.close()


def test_service_principal_with_a_wrong_secret_is_credentials(entra: TokenServer, azurite_tls: str) -> None:
    """Entra refuses the secret: StorageRefused "credentials", neither secret in the message."""
    storage = azure_storage(azurite_tls, "c", "p/", **principal(entra, "wrong-secret-do-not-print"))
    with pytest.raises(StorageRefused) as caught:
        storage.stat("k.mp4")
    assert caught.value.reason == "credentials"
    assert "wrong-secret-do-not-print" not in str(caught.value) and CLIENT_SECRET not in str(caught.value)


def test_azurite_checks_the_token(entra: TokenServer, azurite_tls: str) -> None:
    """An expired token is refused by Azurite itself: "credentials" (the OAuth test is not vacuous)."""
    entra.token_lifetime = -600
    storage = azure_storage(azurite_tls, create_container(azurite_tls), "p/", **principal(entra))
    with pytest.raises(StorageRefused) as caught:
        storage.stat("k.mp4")
    assert caught.value.reason == "credentials"


def test_managed_identity_asks_its_endpoint(
    entra: TokenServer,
    azurite_tls: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No secret configured: the default chain's managed identity (App Service variables) asks the
    local endpoint, with its header, for a storage token, which Azurite accepts."""
    monkeypatch.setenv("IDENTITY_ENDPOINT", entra.msi_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", entra.identity_header)
    storage = azure_storage(azurite_tls, create_container(azurite_tls), "p/", abs_account_name=ACCOUNT)
    write(storage, "mi.mp4", [b"by identity"])
    assert b"".join(storage.read("mi.mp4")) == b"by identity"
    asked = [r for r in entra.requests if r["flow"] == "managed_identity"]
    assert asked and asked[0]["header"] == entra.identity_header
    assert asked[0]["resource"] == "https://storage.azure.com"
    storage.close()


def test_only_a_blob_sent_in_one_request_asks_for_its_whole_md5(storage: AzureStorage) -> None:
    """A block blob's blocks carry their own MD5 (Azure checks each); a second MD5 of every byte for
    its Content-MD5, which Azure does not check, is not asked for. One Put Blob: Azure checks it."""
    threshold = storage.tuning.multipart_threshold
    assert storage.native_checksum_for(threshold) == "md5"
    assert storage.native_checksum_for(threshold + 1) is None
    assert storage.native_checksum_for(None) is None  # no Content-Length: it may become a block blob


def test_a_block_blob_committed_without_a_whole_md5_keeps_its_sha256(storage: AzureStorage) -> None:
    data = os.urandom(storage.tuning.multipart_threshold + storage.tuning.part_size + 1)
    digests = Digests(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    with storage.open_writer("big.mp4", content_type="video/mp4", metadata={}, size_hint=len(data)) as writer:
        writer.write(data)
        stored = writer.commit(digests)
    assert stored.checksums == {"sha256": digests.sha256}
    assert storage.stat("big.mp4").checksums == {"sha256": digests.sha256}
    assert b"".join(storage.read("big.mp4")) == data


# --- download links: each way to sign, and the logins that cannot -----------------------------------


@pytest.mark.parametrize("how", ["container SAS", "account SAS"])
def test_a_sas_token_login_declares_no_links(azurite: str, container: str, how: str) -> None:
    """A storage that logs in with a SAS token has no key to sign with: no links, and asking says what
    would sign one (and never hands out the token itself)."""
    auth = AUTH_WAYS[how](azurite, container)
    storage = azure_storage(azurite, container, "p/", **auth)
    assert not storage.capabilities.links
    with pytest.raises(LinkUnavailable) as caught:
        storage.link("k.mp4", timedelta(minutes=5))
    message = str(caught.value)
    assert "abs_account_key" in message and "Storage Blob Delegator" in message
    assert auth["abs_sas_token"].lstrip("?") not in message
    storage.close()


def test_a_connection_string_with_its_account_key_signs_links(azurite: str, container: str) -> None:
    """``AccountKey`` in a connection string signs a read-only service SAS for the one blob (sp=r, sr=b),
    which Azurite honours; the account key itself is not in the URL."""
    storage = azure_storage(azurite, container, "p/", abs_connection_string=connection_string(azurite))
    write(storage, "cs.mp4", [b"by connection string"])
    url = storage.link("cs.mp4", timedelta(minutes=5))
    query = httpx.URL(url).params
    assert (query["sp"], query["sr"]) == ("r", "b") and ACCOUNT_KEY not in url
    assert httpx.get(url, timeout=30).content == b"by connection string"
    overwrite = httpx.put(url, content=b"overwritten", headers={"x-ms-blob-type": "BlockBlob"}, timeout=30)
    assert overwrite.status_code == 403  # read only
    storage.close()


def test_an_entra_identity_signs_links_with_a_user_delegation_key(entra: TokenServer, azurite_tls: str) -> None:
    """A service principal has no key: Azure gives a user delegation key for the link's lifetime (Get User
    Delegation Key, over HTTPS with the principal's bearer token, which Azurite checks), and the link is a
    read-only, https-only SAS naming that key (its object and tenant, its window around the link's expiry).

    Azurite 3.35 (the newest on Node 20) cannot check the signature itself: it knows the user delegation
    string-to-sign up to version 2025-07-05, and azure-storage-blob 12.31 signs version 2026-10-06, which adds
    two lines (signed request headers and query parameters). The account-key SAS it does check
    (TestAzureLinks in test_azure.py: bytes, Range, refused after its TTL)."""
    storage = azure_storage(azurite_tls, create_container(azurite_tls), "p/", **principal(entra))
    assert storage.capabilities.links and storage.signing == "user_delegation"
    write(storage, "ud.mp4", [b"by delegation"])
    before = datetime.now(UTC).replace(microsecond=0)
    query = httpx.URL(storage.link("ud.mp4", timedelta(minutes=10))).params
    assert (query["sp"], query["sr"], query["spr"]) == ("r", "b", "https")
    assert (query["skoid"], query["sktid"], query["sks"]) == (CLIENT_ID, TENANT, "b")
    start, key_expiry, expiry = (datetime.fromisoformat(query[name]) for name in ("skt", "ske", "se"))
    assert start <= before and key_expiry >= expiry >= before + timedelta(minutes=10)
    assert key_expiry - start <= timedelta(days=7) and "sig" in query
    assert [r for r in entra.requests if r["flow"] == "client_credentials"]
    storage.close()
