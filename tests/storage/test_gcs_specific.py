"""What only GCSStorage does: logins, the resumable path and its checks, error mapping, describe()."""

from __future__ import annotations

import hashlib
import json
import os
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import jwt
import pytest
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from google.api_core import exceptions as api
from google.auth import compute_engine
from google.auth import exceptions as auth
from google.auth.credentials import AnonymousCredentials
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account

from config import CreateOnly
from tests.support.gcs import (
    TEST_TUNING,
    MiB,
    create_bucket,
    gcs_config,
    gcs_storage,
    list_objects,
    object_resource,
    service_account_json,
    start_gcs_emulator,
    watch,
)
from tests.support.ports import free_port
from tests.support.tokenserver import JWT_BEARER, TokenServer
from worker.errors import LinkUnavailable, StorageRefused, StorageUnavailable, VerificationFailed
from worker.storage.checksums import Digests, Hasher, crc32c_b64
from worker.storage.errors import Scrubber
from worker.storage.gcs.bucket import chunk_size
from worker.storage.gcs.errors import mapped
from worker.storage.gcs.signing import signing_mode
from worker.storage.gcs.storage import GCSStorage
from worker.storage.probe import check_storage

BACKEND = "gcs"

SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"  # google-auth signs for it, whatever token_uri says


def upload(storage: GCSStorage, key: str, data: bytes, piece: int = MiB, digests: Digests | None = None) -> Digests:
    """Write `data` in pieces and commit it with its digests (or the ones given)."""
    hasher = Hasher(("crc32c",))
    with storage.open_writer(key, content_type="video/mp4", metadata={"call_cid": "default:x"}) as writer:
        for start in range(0, len(data), piece):
            hasher.update(data[start : start + piece])
            writer.write(data[start : start + piece])
        computed = hasher.digests()
        writer.commit(digests or computed)
    return computed


def check_token_flow(tokens: TokenServer, json_text: str, storage: GCSStorage, sent: list[dict[str, str]]) -> None:
    """The token endpoint got a JWT-bearer grant signed with the JSON's key, and GCS got its token."""
    assert [request.form["grant_type"] for request in tokens.requests] == [JWT_BEARER]
    private = serialization.load_pem_private_key(json.loads(json_text)["private_key"].encode(), None)
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = jwt.decode(
        tokens.requests[0].form["assertion"], public, algorithms=["RS256"], audience=GOOGLE_TOKEN_AUDIENCE
    )
    assert claims["scope"] == SCOPE and claims["iss"].startswith("archiver@")
    assert {headers.get("authorization") for headers in sent} == {f"Bearer {tokens.access_token}"}


@pytest.mark.parametrize("how", ["json", "file"])
def test_service_account_login(
    gcs_emulator: str,
    bucket: str,
    token_server: TokenServer,
    tmp_path: Path,
    how: str,
) -> None:
    """A service-account JSON, given as a string or as a file, fetches its token from its token_uri
    (even with a custom endpoint) and the upload carries that token."""
    json_text, _ = service_account_json(token_server.url)
    path = tmp_path / "sa.json"
    path.write_text(json_text)
    login: dict[str, Any] = {"gcs_credentials": json_text} if how == "json" else {"gcs_credentials_file": str(path)}
    storage = gcs_storage(gcs_emulator, bucket, "p/", **login)
    traffic = watch(storage)
    upload(storage, "a.mp4", b"hello")
    assert storage.stat("a.mp4").size == 5
    storage.close()
    assert list_objects(gcs_emulator, bucket) == ["p/a.mp4"]
    check_token_flow(token_server, json_text, storage, [headers for _, _, headers in traffic.sent])


def test_storage_emulator_host(gcs_emulator: str, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without gcs_endpoint_url, the library's STORAGE_EMULATOR_HOST is honoured, anonymously."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    storage = GCSStorage.from_config(gcs_config(None, bucket, "env/"), TEST_TUNING)
    traffic = watch(storage)
    upload(storage, "a.mp4", b"via the environment")
    assert b"".join(storage.read("a.mp4")) == b"via the environment"
    assert storage.describe() == f"gs://{bucket}/env/ at {gcs_emulator}"
    storage.close()
    assert list_objects(gcs_emulator, bucket) == ["env/a.mp4"]
    assert not [headers for _, _, headers in traffic.sent if "authorization" in headers]


def test_refused_token_is_a_credentials_error(gcs_emulator: str, bucket: str, token_server: TokenServer) -> None:
    """A token endpoint answering 400 invalid_grant gives StorageRefused "credentials", on write and
    stat, and the message holds neither the private key nor the JSON nor a token."""
    token_server.refuse(400, "invalid_grant", "Invalid JWT Signature.")
    json_text, private_key = service_account_json(token_server.url)
    storage = gcs_storage(gcs_emulator, bucket, "p/", gcs_credentials=json_text)
    for attempt in (lambda: upload(storage, "a.mp4", b"x"), lambda: storage.stat("a.mp4")):
        with pytest.raises(StorageRefused) as refused:
            attempt()
        message = str(refused.value)
        assert refused.value.reason == "credentials" and "invalid_grant" in message and "gcs-test" in message
        secret_lines = [line for line in private_key.splitlines() if "PRIVATE KEY" not in line]
        assert not [s for s in [json_text, token_server.access_token, *secret_lines] if s in message]
    storage.close()
    assert list_objects(gcs_emulator, bucket) == []


@pytest.mark.parametrize("size", [MiB, 6 * MiB], ids=["one-request", "resumable"])
def test_missing_bucket_is_refused(gcs_emulator: str, size: int) -> None:
    """Writing into a bucket that does not exist raises StorageRefused "missing_bucket", naming
    storage, bucket and key."""
    storage = gcs_storage(gcs_emulator, "no-such-bucket-here", "p/")
    with pytest.raises(StorageRefused) as refused:
        upload(storage, "k.mp4", os.urandom(size))
    storage.close()
    assert refused.value.reason == "missing_bucket"
    assert all(part in str(refused.value) for part in ("gcs-test", "gs://no-such-bucket-here/p/k.mp4", "404"))


def test_closed_port_is_unreachable() -> None:
    """A closed port gives StorageUnavailable "unreachable" for stat, read and write, quickly."""
    storage = gcs_storage(f"http://127.0.0.1:{free_port()}", "b", "p/")
    started = time.monotonic()
    for attempt in (lambda: storage.stat("k"), lambda: storage.read("k"), lambda: upload(storage, "k", b"x")):
        with pytest.raises(StorageUnavailable) as unavailable:
            attempt()
        assert unavailable.value.reason == "unreachable" and "gcs-test" in str(unavailable.value)
    assert time.monotonic() - started < 8
    storage.close()


def test_large_object_goes_up_in_chunks(storage: GCSStorage, gcs_emulator: str, bucket: str) -> None:
    """Past the threshold the object is a resumable upload in part_size chunks, the last one sent at
    commit with its total and x-goog-hash; GCS's CRC32C is the digests' (no sha256 metadata)."""
    traffic = watch(storage)
    data = os.urandom(12 * MiB + 5)
    digests = upload(storage, "big.mp4", data)
    total = len(data)
    assert traffic.chunks() == ["bytes 0-5242879/*", "bytes 5242880-10485759/*", f"bytes 10485760-{total - 1}/{total}"]
    final = [headers for method, _, headers in traffic.sent if method == "PUT"][-1]
    assert final["x-goog-hash"] == f"crc32c={digests.crc32c}"
    stored = storage.stat("big.mp4")
    assert stored.checksums["crc32c"] == digests.crc32c == crc32c_b64(data) and "sha256" not in stored.checksums
    assert (object_resource(gcs_emulator, bucket, "p/big.mp4") or {}).get("crc32c") == digests.crc32c
    assert b"".join(storage.read("big.mp4")) == data


@pytest.mark.parametrize("size", [1000, 7 * MiB], ids=["one-request", "resumable"])
def test_wrong_crc32c_is_detected(storage: GCSStorage, gcs_emulator: str, bucket: str, size: int) -> None:
    """Digests whose CRC32C does not match the bytes raise VerificationFailed at commit and leave no
    object (one request: GCS refuses it; resumable: commit compares and deletes)."""
    data = os.urandom(size)
    wrong = Digests(size=size, sha256="0" * 64, crc32c=crc32c_b64(b"something else"))
    with pytest.raises(VerificationFailed, match="crc32c|CRC32C"):
        upload(storage, "bad.mp4", data, digests=wrong)
    assert list_objects(gcs_emulator, bucket) == []
    with pytest.raises(FileNotFoundError):
        storage.stat("bad.mp4")


def test_abort_cancels_the_session(storage: GCSStorage) -> None:
    """abort() sends DELETE to the resumable session URI (the emulator answers 501 and keeps it;
    GCS answers 499 and drops it)."""
    traffic = watch(storage)
    with storage.open_writer("gone.mp4", content_type="video/mp4", metadata={}) as writer:
        writer.write(os.urandom(11 * MiB))
        writer.abort()
    assert len(traffic.sessions) == 1
    assert [(method, url) for method, url, _ in traffic.sent if method == "DELETE"] == [("DELETE", traffic.sessions[0])]


def test_memory_stays_bounded(storage: GCSStorage) -> None:
    """Writing 25 MiB in 1 MiB pieces holds about two chunks, never the whole object."""
    piece = os.urandom(MiB)
    tracemalloc.start()
    try:
        with storage.open_writer("bounded.mp4", content_type="video/mp4", metadata={}) as writer:
            for _ in range(25):
                writer.write(piece)
            writer.commit()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * TEST_TUNING.part_size + 3 * MiB
    assert storage.stat("bounded.mp4").size == 25 * MiB


@pytest.mark.parametrize(("part_size", "expected"), [(5 * MiB, 5 * MiB), (5 * MiB + 1000, 5 * MiB), (1000, 256 * 1024)])
def test_chunks_are_multiples_of_256_kib(part_size: int, expected: int) -> None:
    """part_size is rounded down to GCS's 256 KiB unit (at least one unit)."""
    assert chunk_size(part_size) == expected


def test_describe_has_no_secret(token_server: TokenServer) -> None:
    """describe() names bucket, prefix and endpoint, without user info, query string or credentials."""
    json_text, private_key = service_account_json(token_server.url)
    config = gcs_config("http://user:pw@127.0.0.1:9/?token=abc", "bkt", "a/b", gcs_credentials=json_text)
    storage = GCSStorage.from_config(config, TEST_TUNING)
    default = GCSStorage.from_config(gcs_config(None, "bkt", "x", gcs_credentials=json_text), TEST_TUNING)
    assert storage.describe() == "gs://bkt/a/b/ at http://127.0.0.1:9/"
    assert default.describe() == "gs://bkt/x/"
    storage.close()
    default.close()
    assert token_server.requests == []  # nothing is fetched before the first request


@pytest.mark.parametrize(
    ("error", "kind", "reason"),
    [
        (api.Unauthorized("no"), StorageRefused, "credentials"),
        (api.Forbidden("no"), StorageRefused, "permission"),
        (api.TooManyRequests("slow down"), StorageUnavailable, "throttled"),
        (api.ServiceUnavailable("busy"), StorageUnavailable, "server_error"),
        (api.RetryError("gave up", api.InternalServerError("boom")), StorageUnavailable, "server_error"),
        (api.BadRequest("bad"), StorageRefused, "other"),
        (auth.RefreshError("invalid_grant: nope"), StorageRefused, "credentials"),
        (auth.RefreshError("server_error", retryable=True), StorageUnavailable, "server_error"),
        (auth.TransportError("down"), StorageUnavailable, "unreachable"),
        (requests.ReadTimeout("slow"), StorageUnavailable, "unreachable"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_error_mapping(error: Exception, kind: type[Exception], reason: str) -> None:
    """Errors the emulator cannot produce map like the ones it can: one table for every source."""
    found = mapped(error, "gcs storage 'x': stat gs://b/k", "key", Scrubber())
    assert isinstance(found, kind) and getattr(found, "reason", None) == reason


def test_messages_lose_query_strings_and_secrets() -> None:
    """A session URI's upload_id and configured secrets never reach a message; the key keeps its '?'."""
    error = requests.ConnectionError("PUT http://h/upload?uploadType=resumable&upload_id=SESSION-SECRET: sk-123")
    scrub = Scrubber(["sk-123"], queries=True)
    message = str(mapped(error, "gcs storage 'x': upload gs://b/what?/is=this", "session", scrub))
    assert "SESSION-SECRET" not in message and "sk-123" not in message and "gs://b/what?/is=this" in message


# --- download links -------------------------------------------------------------------------------------


def test_anonymous_credentials_declare_no_links(storage: GCSStorage) -> None:
    """Against the emulator without a login nothing can sign: no links, and asking says what would."""
    assert not storage.capabilities.links
    with pytest.raises(LinkUnavailable, match="gcs_credentials") as caught:
        storage.link("a.mp4", timedelta(minutes=5))
    assert "signBlob" in str(caught.value)


@pytest.mark.parametrize(("credentials", "mode"), [
    (lambda: service_account.Credentials.from_service_account_info(json.loads(service_account_json("http://t")[0])),
     "key"),
    (lambda: compute_engine.Credentials(), "iam"),  # the metadata server's: signBlob signs for it
    (lambda: AnonymousCredentials(), None),
    (lambda: user_credentials.Credentials(token="user-token"), None),  # a person's own login: no account to sign as
])
def test_which_credentials_can_sign(credentials: Callable[[], Any], mode: str | None) -> None:
    """A key signs locally; a service account without its key has IAM signBlob sign; others cannot."""
    assert signing_mode(credentials()) == mode


def test_a_signed_url_verifies_with_the_service_accounts_public_key(
    gcs_emulator: str, bucket: str, token_server: TokenServer
) -> None:
    """The emulator ignores signatures, so the V4 signature is checked here as GCS checks it: the canonical
    request rebuilt from the URL (GET, path, sorted query, host, UNSIGNED-PAYLOAD) hashed into the string to
    sign, verified with the service account's public key; the credential names the account, X-Goog-Expires
    the TTL, and the URL points at the storage's endpoint. A link longer than 7 days is refused."""
    json_text, private_key = service_account_json(token_server.url)
    storage = gcs_storage(gcs_emulator, bucket, "p/", gcs_credentials=json_text)
    assert storage.capabilities.links and storage.signing == "key"
    upload(storage, "é/a b.mp4", b"signed")
    url = httpx.URL(storage.link("é/a b.mp4", timedelta(minutes=15)))
    assert str(url).startswith(f"{gcs_emulator}/{bucket}/p/")
    query, signature = url.query.decode().rsplit("&X-Goog-Signature=", 1)
    params = dict(pair.split("=", 1) for pair in query.split("&"))
    assert list(params) == sorted(params) and params["X-Goog-Expires"] == "900"
    assert params["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256" and params["X-Goog-SignedHeaders"] == "host"
    credential = unquote(params["X-Goog-Credential"])
    assert credential.startswith(json.loads(json_text)["client_email"] + "/")
    path, host = url.raw_path.decode().split("?")[0], url.netloc.decode()

    def string_to_sign(signed_query: str) -> bytes:
        canonical = "\n".join(["GET", path, signed_query, f"host:{host}", "", "host", "UNSIGNED-PAYLOAD"])
        return "\n".join(["GOOG4-RSA-SHA256", params["X-Goog-Date"], credential.split("/", 1)[1],
                          hashlib.sha256(canonical.encode()).hexdigest()]).encode()

    public = serialization.load_pem_private_key(private_key.encode(), None).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(bytes.fromhex(signature), string_to_sign(query), padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(InvalidSignature):  # the check is not vacuous: a longer expiry is another request
        public.verify(bytes.fromhex(signature), string_to_sign(query.replace("Expires=900", "Expires=9000")),
                      padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(LinkUnavailable, match="7 days"):
        storage.link("é/a b.mp4", timedelta(days=8))
    storage.close()


# --- Create-only: ifGenerationMatch=0 ---------------------------------------------------------------


@pytest.fixture(scope="module")
def stock_gcs_emulator() -> Iterator[str]:
    """gcp-storage-emulator without the ifGenerationMatch=0 answer the tests add (only session cancel)."""
    url, stop = start_gcs_emulator(stock_preconditions=True)
    try:
        yield url
    finally:
        stop()


@pytest.mark.parametrize(("mode", "overwrite", "sent"), [("condition", False, True), ("head", False, False),
                                                          ("condition", True, False)])
def test_create_only_uploads_carry_if_generation_match_0(storage: GCSStorage, mode: CreateOnly, overwrite: bool,
                                                          sent: bool) -> None:
    """In mode "condition" the one-request upload and the request opening a resumable session carry
    ifGenerationMatch=0 (what real GCS checks when it makes the object); in mode "head", and when the
    writer may replace the object, neither does."""
    storage.create_only = mode
    traffic = watch(storage)
    for key, size in (("one.mp4", 1000), ("resumable.mp4", 6 * MiB)):
        with storage.open_writer(key, content_type="video/mp4", metadata={}, overwrite=overwrite) as writer:
            writer.write(os.urandom(size))
            writer.commit()
    posts = [url for method, url, _ in traffic.sent if method == "POST" and "/upload/" in url]
    assert len(posts) == 2 and ["uploadType=multipart" in posts[0], "uploadType=resumable" in posts[1]] == [True] * 2
    assert all(("ifGenerationMatch=0" in url) == sent for url in posts)


def test_the_stock_emulator_ignores_the_condition_and_the_check_says_so(stock_gcs_emulator: str) -> None:
    """Measured: gcp-storage-emulator 2026.7.19 ignores ifGenerationMatch=0 and overwrites. `archiver
    storage check` in mode "condition" fails at "create-only" with the advice; in mode "head" the HEAD
    refuses the second write and the check passes, saying the store ignores the condition."""
    bucket = create_bucket(stock_gcs_emulator)
    storage = gcs_storage(stock_gcs_emulator, bucket, "p/")
    write_twice = [b"first", b"second"]
    for data in write_twice:
        with storage.open_writer("twice.mp4", content_type="video/mp4", metadata={}) as writer:
            writer.write(data)
            writer.commit()
    assert b"".join(storage.read("twice.mp4")) == b"second"  # the condition went unheeded
    report = check_storage(storage, TEST_TUNING)
    assert (report.ok, report.steps[-1].name) == (False, "create-only")
    assert 'set create_only = "head"' in (report.message or "")
    storage.create_only = "head"
    report = check_storage(storage, TEST_TUNING)
    assert report.ok, report.message
    assert "the store ignores the create-only condition" in report.steps[3].detail
    assert list_objects(stock_gcs_emulator, bucket) == ["p/twice.mp4"]
    storage.close()
