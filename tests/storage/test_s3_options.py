"""The ``[storages.aws_s3]`` options beyond the basics, against a real moto_server: an assumed role,
server-side encryption, storage class, tags, and what each ``s3_request_checksum`` mode puts on the wire
(seen through the fault proxy, which records every request's headers)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs

import boto3
import pytest
from botocore.credentials import RefreshableCredentials
from mypy_boto3_s3 import S3Client

from config import StorageConfig
from tests.support.faultproxy import FaultProxy, Recorded, answer
from tests.support.moto import ACCESS_KEY, SECRET_KEY, TEST_TUNING, s3_config
from worker.errors import StorageRefused
from worker.storage.checksums import Digests, Hasher, crc32c_b64, md5_b64
from worker.storage.s3.storage import S3Storage

BACKEND = "s3"

MiB = 1024 * 1024
PART = int(TEST_TUNING.part_size)


def config(endpoint: str, bucket: str, name: str = "s3-test", **options: Any) -> StorageConfig:
    base = s3_config(endpoint, bucket, "p/", name)
    assert base.aws_s3 is not None
    merged = {**base.aws_s3.model_dump(), "s3_api_key": ACCESS_KEY, "s3_secret": SECRET_KEY, **options}  # None: chain
    return base.model_copy(update={"aws_s3": type(base.aws_s3).model_validate(merged)})


def storage(endpoint: str, bucket: str, name: str = "s3-test", **options: Any) -> S3Storage:
    return S3Storage.from_config(config(endpoint, bucket, name, **options), TEST_TUNING)


def write(storage: S3Storage, key: str, data: bytes, *, native: bool = True) -> Digests:
    """Write `data` in 1 MiB chunks and commit it with SHA-256 (and the native checksum if `native`)."""
    checksum = storage.capabilities.native_checksum
    hasher = Hasher((checksum,) if checksum and native else ())
    with storage.open_writer(key, content_type="video/mp4", metadata={}) as writer:
        for start in range(0, len(data), MiB):
            hasher.update(data[start : start + MiB])
            writer.write(data[start : start + MiB])
        digests = hasher.digests()
        writer.commit(digests)
    return digests


def identity(moto_server: str, access_key: str) -> str:
    """The ARN moto's STS says `access_key` belongs to."""
    sts = boto3.client("sts", endpoint_url=moto_server, region_name="us-east-1",
                       aws_access_key_id=access_key, aws_secret_access_key="unused")  # fmt: skip
    arn: str = sts.get_caller_identity()["Arn"]
    sts.close()
    return arn


def create_role(moto_server: str) -> str:
    iam = boto3.client("iam", endpoint_url=moto_server, region_name="us-east-1",
                       aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)  # fmt: skip
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"},
                                                      "Action": "sts:AssumeRole"}]}  # fmt: skip
    role = iam.create_role(RoleName=f"archiver-{uuid.uuid4().hex[:12]}", AssumeRolePolicyDocument=json.dumps(policy))
    iam.close()
    arn: str = role["Role"]["Arn"]
    return arn


def access_keys_used(storage: S3Storage) -> list[str]:
    """Collects the access key id of every signed S3 request `storage` sends from now on."""
    keys: list[str] = []

    def grab(request: Any, **_: Any) -> None:
        keys.append(request.headers["Authorization"].decode().split("Credential=")[1].split("/")[0])

    storage.client.meta.events.register("before-send.s3", grab)
    return keys


def test_role_is_assumed_with_external_id(proxy: FaultProxy, moto_server: str, bucket: str) -> None:
    """With s3_role_arn, uploads are signed with the role's temporary keys, assumed once through STS at
    the custom endpoint with the external id and an archiver session name, and refreshable."""
    role = create_role(moto_server)
    s3 = storage(proxy.url, bucket, "role-test", s3_role_arn=role, s3_external_id="ext-42")
    used = access_keys_used(s3)
    write(s3, "a.mp4", os.urandom(1000))
    write(s3, "b.mp4", os.urandom(12 * MiB))
    (assume,) = [r for r in proxy.requests if r.has_header(r"^authorization: .*/sts/aws4_request")]
    sent = parse_qs(assume.body.decode())
    assert (sent["Action"], sent["RoleArn"], sent["ExternalId"]) == (["AssumeRole"], [role], ["ext-42"])
    assert sent["RoleSessionName"] == ["archiver-role-test"]
    assert ACCESS_KEY in assume.headers["authorization"]  # the configured keys are only the source
    assert len(set(used)) == 1 and used[0] != ACCESS_KEY
    assert identity(moto_server, used[0]).endswith(f":assumed-role/{role.rsplit('/', 1)[1]}/archiver-role-test")
    assert isinstance(cast(Any, s3.client)._get_credentials(), RefreshableCredentials)  # botocore refreshes them
    s3.close()


@pytest.fixture
def chain_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The default credential chain sees only the environment (no files, no instance metadata)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))


def test_role_source_from_the_default_chain(
    chain_only: None, monkeypatch: pytest.MonkeyPatch, proxy: FaultProxy, moto_server: str, bucket: str
) -> None:
    """Without configured keys, the role is assumed with the default chain's credentials."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIACHAINKEY00000001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "chain-secret")
    s3 = storage(proxy.url, bucket, s3_api_key=None, s3_secret=None, s3_role_arn=create_role(moto_server))
    write(s3, "c.mp4", b"chain")
    (assume,) = [r for r in proxy.requests if r.has_header(r"^authorization: .*/sts/aws4_request")]
    assert "AKIACHAINKEY00000001" in assume.headers["authorization"]
    s3.close()


@pytest.mark.parametrize("role", [None, "arn:aws:iam::123456789012:role/any"], ids=["plain", "role"])
def test_no_credentials_anywhere(chain_only: None, moto_server: str, bucket: str, role: str | None) -> None:
    """No keys and an empty chain: StorageRefused with reason "credentials", with or without a role."""
    s3 = storage(moto_server, bucket, s3_api_key=None, s3_secret=None, s3_role_arn=role)
    with pytest.raises(StorageRefused) as refused:
        write(s3, "n.mp4", b"x")
    assert refused.value.reason == "credentials"
    s3.close()


def test_refused_role_is_a_credentials_error(proxy: FaultProxy, bucket: str) -> None:
    """STS refusing AssumeRole gives StorageRefused with reason "credentials", saying so."""
    proxy.add(answer(403, "AccessDenied", "not authorized to perform sts:AssumeRole", header=r"/sts/aws4_request"))
    s3 = storage(proxy.url, bucket, s3_role_arn="arn:aws:iam::123456789012:role/nope")
    with pytest.raises(StorageRefused) as refused:
        write(s3, "a.mp4", b"x")
    assert refused.value.reason == "credentials"
    assert "assuming the role" in str(refused.value) and SECRET_KEY not in str(refused.value)
    s3.close()


@pytest.mark.parametrize("size", [1000, 12 * MiB], ids=["put", "multipart"])
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"s3_sse": "AES256"}, {"ServerSideEncryption": "AES256"}),
        ({"s3_sse": "aws:kms", "s3_sse_kms_key_id": "arn:aws:kms:us-east-1:123456789012:key/k-1"},
         {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "arn:aws:kms:us-east-1:123456789012:key/k-1"}),
        ({"s3_storage_class": "STANDARD_IA"}, {"StorageClass": "STANDARD_IA"}),
    ],
    ids=["sse-s3", "sse-kms", "storage-class"],
)  # fmt: skip
def test_object_options_reach_the_object(
    moto_server: str, moto_client: S3Client, bucket: str, options: dict[str, str], expected: dict[str, str], size: int
) -> None:
    """Encryption and storage class apply to single PUTs and multipart uploads alike."""
    s3 = storage(moto_server, bucket, **options)
    write(s3, "o.mp4", os.urandom(size))
    head: dict[str, Any] = dict(moto_client.head_object(Bucket=bucket, Key="p/o.mp4"))
    assert {name: head.get(name) for name in expected} == expected
    s3.close()


@pytest.mark.parametrize("size", [1000, 12 * MiB], ids=["put", "multipart"])
def test_tags_reach_the_object(moto_server: str, moto_client: S3Client, bucket: str, size: int) -> None:
    """s3_tags become the object's tags, URL-encoded on the way (spaces, "=", "+", "/", ":", "@")."""
    tags = {"team": "video ops", "rule": "a=b+c", "path": "x/y:z@q"}
    s3 = storage(moto_server, bucket, s3_tags=tags)
    write(s3, "t.mp4", os.urandom(size))
    tag_set = moto_client.get_object_tagging(Bucket=bucket, Key="p/t.mp4")["TagSet"]
    assert {t["Key"]: t["Value"] for t in tag_set} == tags
    s3.close()


def checksum_headers(request: Recorded) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k.startswith(("x-amz-checksum", "x-amz-sdk-checksum"))}


def uploads(proxy: FaultProxy) -> list[Recorded]:
    """PutObject and UploadPart requests, in the order they arrived."""
    return [r for r in proxy.requests if r.method == "PUT"]


@pytest.mark.parametrize("size", [1000, 12 * MiB + 5], ids=["put", "multipart"])
def test_when_required_sends_content_md5_and_no_checksum_header(proxy: FaultProxy, bucket: str, size: int) -> None:
    """Under when_required no request carries an x-amz-checksum-* header; every PUT body and part
    carries the Content-MD5 of its bytes; the object reads back whole; no native checksum is declared."""
    s3 = storage(proxy.url, bucket, s3_request_checksum="when_required")
    assert s3.capabilities.native_checksum is None
    data = os.urandom(size)
    write(s3, "r.mp4", data)
    assert b"".join(s3.read("r.mp4")) == data
    assert s3.stat("r.mp4").size == size
    assert [checksum_headers(r) for r in proxy.requests if checksum_headers(r)] == []
    bodies = [data[i : i + PART] for i in range(0, size, PART)] if size > PART else [data]
    assert sorted(r.headers.get("content-md5", "") for r in uploads(proxy)) == sorted(map(md5_b64, bodies))
    s3.close()


def test_when_supported_multipart_carries_full_object_crc32c(
    proxy: FaultProxy, moto_client: S3Client, bucket: str
) -> None:
    """A multipart upload is created FULL_OBJECT CRC32C; each part carries its own CRC32C; completion
    carries the digests' CRC32C and the size; moto, computing from the bytes, keeps the same value, and
    stat reports it."""
    s3 = storage(proxy.url, bucket)
    assert s3.capabilities.native_checksum == "crc32c"
    data = os.urandom(12 * MiB + 5)
    digests = write(s3, "m.mp4", data)
    create, complete = [r for r in proxy.requests if r.method == "POST"]
    assert checksum_headers(create) == {"x-amz-checksum-algorithm": "CRC32C", "x-amz-checksum-type": "FULL_OBJECT"}
    parts = [data[i : i + PART] for i in range(0, len(data), PART)]
    assert sorted(r.headers["x-amz-checksum-crc32c"] for r in uploads(proxy)) == sorted(map(crc32c_b64, parts))
    assert complete.headers["x-amz-checksum-crc32c"] == digests.crc32c == crc32c_b64(data)
    assert complete.headers["x-amz-checksum-type"] == "FULL_OBJECT"
    assert complete.headers["x-amz-mp-object-size"] == str(len(data))
    head = moto_client.head_object(Bucket=bucket, Key="p/m.mp4", ChecksumMode="ENABLED")
    assert (head.get("ChecksumCRC32C"), head.get("ChecksumType")) == (digests.crc32c, "FULL_OBJECT")
    assert s3.stat("m.mp4").checksums == {"crc32c": digests.crc32c}
    s3.close()


def test_a_multipart_upload_without_a_stream_crc32c_completes_with_the_parts_combined(
    proxy: FaultProxy, moto_client: S3Client, bucket: str
) -> None:
    """A transfer of a multipart-sized object computes no CRC32C over the stream (`native_checksum_for`):
    the completion carries the whole object's CRC32C combined from the parts' (moto keeps what it is
    sent, so this checks the combination), and stat reports it."""
    s3 = storage(proxy.url, bucket)
    data = os.urandom(12 * MiB + 5)
    assert s3.native_checksum_for(len(data)) is None and s3.native_checksum_for(1000) == "crc32c"
    digests = Digests(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    with s3.open_writer("c.mp4", content_type="video/mp4", metadata={}, size_hint=len(data)) as writer:
        for i in range(0, len(data), MiB):
            writer.write(data[i : i + MiB])
        writer.commit(digests)
    complete = [r for r in proxy.requests if r.method == "POST"][-1]
    assert complete.headers["x-amz-checksum-crc32c"] == crc32c_b64(data)
    assert s3.stat("c.mp4").checksums == {"crc32c": crc32c_b64(data)}
    s3.close()


@pytest.mark.parametrize("native", [True, False], ids=["crc32c", "sha256-only"])
def test_when_supported_single_put_carries_the_digest(proxy: FaultProxy, bucket: str, native: bool) -> None:
    """A single PUT carries the digests' CRC32C (or their SHA-256 when they have no CRC32C), never
    botocore's own CRC32, and its SHA-256 in metadata; stat reports them."""
    s3 = storage(proxy.url, bucket)
    data = os.urandom(1000)
    digests = write(s3, "s.mp4", data, native=native)
    (put,) = uploads(proxy)
    if native:
        expected = {"x-amz-sdk-checksum-algorithm": "CRC32C", "x-amz-checksum-crc32c": digests.crc32c}
        assert checksum_headers(put) == expected
        assert s3.stat("s.mp4").checksums == {"crc32c": digests.crc32c, "sha256": digests.sha256}
    else:
        assert checksum_headers(put)["x-amz-sdk-checksum-algorithm"] == "SHA256"
        assert bytes.fromhex(digests.sha256) == base64.b64decode(put.headers["x-amz-checksum-sha256"])
        assert s3.stat("s.mp4").checksums == {"sha256": digests.sha256}
    s3.close()


def test_a_part_refused_once_is_sent_again_whole_from_its_chunks(
    proxy: FaultProxy, moto_client: S3Client, bucket: str
) -> None:
    """A part goes up as the chunks it was written in (no join): when S3 answers its first try 503,
    botocore rewinds that body and sends it again, and the object holds exactly the bytes written
    (moto checks the part's CRC32C, and the completion's whole-object CRC32C)."""
    s3 = storage(proxy.url, bucket)
    refused = proxy.add(answer(503, "SlowDown", method="PUT", path=r"partNumber=2", times=1))
    data = os.urandom(2 * PART + 5)
    write(s3, "again.mp4", data)
    assert len(refused.seen) == 1
    assert len([r for r in uploads(proxy) if "partNumber=2" in r.target]) == 2  # refused, then sent again
    assert moto_client.get_object(Bucket=bucket, Key="p/again.mp4")["Body"].read() == data
    s3.close()
