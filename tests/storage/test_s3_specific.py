"""What only S3Storage does: multipart mechanics, bounded parts in flight, error mapping, encoding."""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from datetime import timedelta
from typing import Any

import httpx
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError
from mypy_boto3_s3 import S3Client

from config import S3Options
from tests.support.moto import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    TEST_TUNING,
    s3_config,
    s3_storage,
)
from tests.support.ports import free_port
from worker.errors import LinkUnavailable, StorageRefused, StorageUnavailable, VerificationFailed
from worker.storage.checksums import Digests
from worker.storage.s3.storage import S3Storage, make_client

BACKEND = "s3"

MiB = 1024 * 1024


def pending(client: S3Client, bucket: str) -> list[str]:
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def write(storage: S3Storage, key: str, chunks: Any) -> None:
    with storage.open_writer(key, content_type="video/mp4", metadata={}) as writer:
        for chunk in chunks:
            writer.write(chunk)
        writer.commit()


def test_large_object_is_a_multipart_upload(storage: S3Storage) -> None:
    """Past the threshold the object is uploaded in part_size parts (ETag "-3" for 12 MiB)."""
    write(storage, "big.mp4", [os.urandom(MiB)] * 12)
    assert (storage.stat("big.mp4").etag or "").endswith("-3")


def test_small_object_is_one_put(storage: S3Storage) -> None:
    """At or under the threshold the object is one PutObject (a plain MD5 ETag, no "-N")."""
    write(storage, "small.mp4", [os.urandom(MiB)] * 5)
    assert "-" not in (storage.stat("small.mp4").etag or "-")


@pytest.mark.parametrize(("mib", "etag_suffix"), [(12, None), (13, "-3")])
def test_threshold_above_part_size(moto_server: str, bucket: str, mib: int, etag_suffix: str | None) -> None:
    """With a threshold of 12 MiB and 5 MiB parts, 12 MiB is one PUT and 13 MiB three parts."""
    tuning = TEST_TUNING.model_copy(update={"multipart_threshold": 12 * MiB})
    storage = s3_storage(moto_server, bucket, "p/", tuning)
    write(storage, "t.mp4", [os.urandom(MiB)] * mib)
    etag = storage.stat("t.mp4").etag or ""
    assert etag.endswith(etag_suffix) if etag_suffix else "-" not in etag
    assert storage.stat("t.mp4").size == mib * MiB
    storage.close()


def test_parts_in_flight_are_bounded(storage: S3Storage) -> None:
    """No more than parts_in_flight parts are ever uploading at once, and write() waits for them."""
    lock, running, peak = threading.Lock(), [0], [0]

    def started(**_: Any) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.2)

    def finished(**_: Any) -> None:
        with lock:
            running[0] -= 1

    storage.client.meta.events.register("before-call.s3.UploadPart", started)
    storage.client.meta.events.register("after-call.s3.UploadPart", finished)
    write(storage, "bounded.mp4", [os.urandom(MiB)] * 26)
    assert peak[0] == TEST_TUNING.parts_in_flight


def test_memory_stays_bounded(storage: S3Storage) -> None:
    """Writing 40 MiB holds about part_size × (parts_in_flight + 1), never the whole object."""
    chunk = os.urandom(MiB)
    tracemalloc.start()
    try:
        write(storage, "bounded-memory.mp4", (chunk for _ in range(40)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < TEST_TUNING.part_size * (TEST_TUNING.parts_in_flight + 1) + 4 * MiB
    assert storage.stat("bounded-memory.mp4").size == 40 * MiB


def test_failed_part_aborts_the_upload(storage: S3Storage, moto_client: S3Client, bucket: str) -> None:
    """A part that fails with a 5xx raises StorageUnavailable and leaves no pending upload."""

    def fail_second_part(params: dict[str, Any], **_: Any) -> Any:
        if str(params["query_string"].get("partNumber")) != "2":
            return None
        error = {"Error": {"Code": "InternalError", "Message": "injected"}, "ResponseMetadata": {"HTTPStatusCode": 500}}
        return AWSResponse("http://moto", 500, HTTPHeaders(), None), error

    storage.client.meta.events.register("before-call.s3.UploadPart", fail_second_part)
    with pytest.raises(StorageUnavailable, match="InternalError"):
        write(storage, "fails.mp4", [os.urandom(MiB)] * 16)
    assert pending(moto_client, bucket) == []
    with pytest.raises(FileNotFoundError):
        storage.stat("fails.mp4")


@pytest.mark.parametrize("size", [MiB, 7 * MiB], ids=["put", "multipart"])
def test_missing_bucket_is_refused(moto_server: str, size: int) -> None:
    """Writing to a bucket that does not exist raises StorageRefused naming storage, bucket, key, code."""
    storage = s3_storage(moto_server, "no-such-bucket-here", "p/")
    with pytest.raises(StorageRefused) as refused:
        write(storage, "k.mp4", [os.urandom(size)])
    storage.close()
    message = str(refused.value)
    assert all(part in message for part in ("s3-test", "no-such-bucket-here", "p/k.mp4", "NoSuchBucket"))
    assert ACCESS_KEY not in message and SECRET_KEY not in message


def test_unreachable_endpoint_is_unavailable() -> None:
    """A closed port gives StorageUnavailable, quickly (one attempt, short timeouts)."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    options = S3Options(s3_region=REGION, s3_custom_endpoint_url=endpoint, s3_api_key=ACCESS_KEY, s3_secret=SECRET_KEY)
    client = make_client(options, TEST_TUNING, max_attempts=1)
    storage = S3Storage("down", client, bucket="b", tuning=TEST_TUNING, endpoint=endpoint)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="down"):
        storage.stat("k.mp4")
    with pytest.raises(StorageUnavailable):
        write(storage, "k.mp4", [b"x"])
    assert time.monotonic() - started < 5
    storage.close()


def test_metadata_is_percent_encoded_on_the_wire(storage: S3Storage, moto_client: S3Client, bucket: str) -> None:
    """S3 sees ASCII metadata; stat decodes it back to the original text."""
    with storage.open_writer("m.mp4", content_type="video/mp4", metadata={"title": "été 100%"}) as writer:
        writer.commit()
    raw = moto_client.head_object(Bucket=bucket, Key="p/m.mp4")["Metadata"]["title"]
    assert raw.isascii() and raw == "%C3%A9t%C3%A9%20100%25"
    assert storage.stat("m.mp4").metadata == {"title": "été 100%"}


def test_non_ascii_metadata_key_is_refused(storage: S3Storage) -> None:
    """A metadata key S3 cannot carry raises ValueError before anything is sent."""
    with pytest.raises(ValueError, match="metadata"):
        storage.open_writer("k.mp4", content_type="video/mp4", metadata={"tîtle": "x"})


def test_describe_names_endpoint_without_secrets(moto_server: str) -> None:
    """describe() shows bucket, prefix and endpoint, without user info or query string."""
    config = s3_config(moto_server, "bkt", "a/b")
    client = make_client(config.aws_s3, TEST_TUNING)  # type: ignore[arg-type]
    storage = S3Storage(
        "x",
        client,
        bucket="bkt",
        prefix="a/b",
        tuning=TEST_TUNING,
        endpoint="https://user:pw@s3.example.com:9000/?token=abc",
    )
    assert storage.describe() == "s3://bkt/a/b/ at https://s3.example.com:9000/"
    storage.close()


def _client_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": f"{code} happened"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "HeadObject")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_client_error("AccessDenied", 403), StorageRefused),
        (_client_error("InvalidAccessKeyId", 403), StorageRefused),
        (_client_error("SignatureDoesNotMatch", 403), StorageRefused),
        (_client_error("NoSuchBucket", 404), StorageRefused),
        (_client_error("PermanentRedirect", 301), StorageRefused),
        (_client_error("InvalidBucketName", 400), StorageRefused),
        (_client_error("SlowDown", 503), StorageUnavailable),
        (_client_error("RequestTimeout", 400), StorageUnavailable),
        (_client_error("InternalError", 500), StorageUnavailable),
        (_client_error("Throttling", 400), StorageUnavailable),
        (_client_error("Whatever", 502), StorageUnavailable),
        (_client_error("NoSuchKey", 404), FileNotFoundError),
        (_client_error("404", 404), FileNotFoundError),
        (EndpointConnectionError(endpoint_url="http://x"), StorageUnavailable),
        (ReadTimeoutError(endpoint_url="http://x"), StorageUnavailable),
        (NoCredentialsError(), StorageRefused),
    ],
)
def test_error_mapping(storage: S3Storage, error: Exception, expected: type[Exception]) -> None:
    """Each botocore error becomes the `worker.errors` class the contract names (404 → missing key)."""
    with pytest.raises(expected) as raised:
        storage.raise_mapped(error, "stat", "k.mp4", missing=True)
    assert raised.value.__cause__ is error
    assert "s3-test" in str(raised.value) and "p/k.mp4" in str(raised.value)


def _sts_error(code: str, status: int) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "AssumeRole")


def _with_message(code: str, status: int, message: str) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "PutObject")


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (_client_error("InvalidAccessKeyId", 403), "credentials"),
        (_client_error("SignatureDoesNotMatch", 403), "credentials"),
        (_client_error("ExpiredToken", 400), "credentials"),
        (_client_error("InvalidToken", 400), "credentials"),
        (_sts_error("AccessDenied", 403), "credentials"),
        (_sts_error("InvalidClientTokenId", 403), "credentials"),
        (NoCredentialsError(), "credentials"),
        (_client_error("AccessDenied", 403), "permission"),
        (_client_error("AllAccessDisabled", 403), "permission"),
        (_client_error("NoSuchBucket", 404), "missing_bucket"),
        (_with_message("InvalidArgument", 400, "x-amz-checksum-crc32 header not supported"), "checksum_rejected"),
        (_with_message("NotImplemented", 501, "Header 'x-amz-checksum-crc32' with value 'x' not implemented"),
         "checksum_rejected"),
        (_with_message("InvalidRequest", 400, "Content-MD5 is not supported"), "checksum_rejected"),
        (_client_error("BadDigest", 400), "checksum_rejected"),
        (_client_error("XAmzContentSHA256Mismatch", 400), "checksum_rejected"),
        (_client_error("InvalidDigest", 400), "checksum_rejected"),
        (_client_error("SlowDown", 503), "throttled"),
        (_client_error("ServiceUnavailable", 503), "throttled"),
        (_client_error("TooManyRequests", 429), "throttled"),
        (_client_error("InternalError", 500), "server_error"),
        (_sts_error("InternalFailure", 500), "server_error"),
        (_client_error("NotImplemented", 501), "server_error"),
        (_client_error("RequestTimeout", 400), "other"),
        (_client_error("InvalidArgument", 400), "other"),
        (EndpointConnectionError(endpoint_url="http://x"), "unreachable"),
        (ReadTimeoutError(endpoint_url="http://x"), "unreachable"),
    ],
)  # fmt: skip
def test_error_reasons(storage: S3Storage, error: Exception, reason: str) -> None:
    """Each error carries the reason an operator can act on; a rejected checksum says what to set."""
    with pytest.raises((StorageRefused, StorageUnavailable)) as raised:
        storage.raise_mapped(error, "write", "k.mp4")
    mapped = raised.value
    assert isinstance(mapped, StorageRefused | StorageUnavailable) and mapped.reason == reason
    assert ('s3_request_checksum = "when_required"' in str(mapped)) == (reason == "checksum_rejected")


def test_digests_of_other_bytes_are_refused(storage: S3Storage, moto_client: S3Client, bucket: str) -> None:
    """Digests describing another size than what was written fail the commit (VerificationFailed),
    and nothing is left: no object, no pending upload."""
    with pytest.raises(VerificationFailed), storage.open_writer("v.mp4", content_type="video/mp4", metadata={}) as w:
        w.write(os.urandom(11 * MiB))
        w.commit(Digests(size=10, sha256="0" * 64, crc32c="AAAAAA=="))
    assert pending(moto_client, bucket) == []
    with pytest.raises(FileNotFoundError):
        storage.stat("v.mp4")


@pytest.mark.parametrize("code", ["BadDigest", "XAmzContentSHA256Mismatch", "InvalidDigest"])
def test_a_digest_the_store_finds_wrong_is_retried(storage: S3Storage, code: str) -> None:
    """Bytes damaged on the way are worth sending again: transient, not a permanent refusal."""
    with pytest.raises(StorageUnavailable) as raised:
        storage.raise_mapped(_client_error(code, 400), "write", "k.mp4")
    assert raised.value.reason == "checksum_rejected"


# --- download links -------------------------------------------------------------------------------------


def test_a_presigned_link_is_sigv4_at_the_storages_endpoint_path_style(
        storage: S3Storage, moto_server: str, bucket: str) -> None:
    """botocore would presign with SigV2 in us-east-1 (an absolute Expires, refused by newer regions and
    most S3-compatible stores): the link is SigV4, X-Amz-Expires the TTL, at the configured endpoint with
    the bucket in the path; the storage's own requests still work. Past 7 days: refused."""
    write(storage, "a b.mp4", [b"presigned"])
    url = httpx.URL(storage.link("a b.mp4", timedelta(minutes=10)))
    assert str(url).startswith(f"{moto_server}/{bucket}/p/a%20b.mp4?")
    assert url.params["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256" and url.params["X-Amz-Expires"] == "600"
    assert "Signature" not in url.params and "AWSAccessKeyId" not in url.params
    assert url.params["X-Amz-Credential"].startswith(f"{ACCESS_KEY}/") and SECRET_KEY not in str(url)
    assert b"".join(storage.read("a b.mp4")) == b"presigned" and storage.stat("a b.mp4").size == 9
    with pytest.raises(LinkUnavailable, match="7 days"):
        storage.link("a b.mp4", timedelta(days=7, seconds=1))


def test_a_link_without_credentials_is_a_credentials_error(moto_server: str, bucket: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """No key configured and none in the environment: nothing to sign with, StorageRefused "credentials"."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    options = S3Options.model_validate({"s3_region": "us-east-1", "s3_custom_endpoint_url": moto_server})
    storage = S3Storage("anon", make_client(options, TEST_TUNING), bucket=bucket, prefix="p/", tuning=TEST_TUNING)
    with pytest.raises(StorageRefused) as caught:
        storage.link("a.mp4", timedelta(minutes=1))
    assert caught.value.reason == "credentials"
    storage.close()
