"""S3Storage joins the conformance suite, against a real moto_server; its links, against moto and s3rver."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from mypy_boto3_s3 import S3Client

from tests.storage.conformance import CRLF_KEY, LONG_KEY, LinkConformance, ProtectionConformance, StorageConformance
from tests.support.moto import ACCESS_KEY, SECRET_KEY
from tests.support.s3rver import s3rver, s3rver_storage  # noqa: F401 - a session fixture, used by name
from worker.storage.s3.storage import S3Storage

BACKEND = "s3"


class TestS3(StorageConformance):
    refused_keys = frozenset({CRLF_KEY, LONG_KEY})
    resume_blind_to_crc32c = ("moto's ListParts lists no part checksums (AWS lists each part's ChecksumCRC32C, which "
                              "resume_writer compares, and checks them again at CompleteMultipartUpload)")

    @pytest.fixture
    def leftovers(self, moto_client: S3Client, bucket: str) -> Callable[[], list[str]]:
        return lambda: [u["Key"] for u in moto_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]

    @pytest.fixture
    def raw_keys(self, moto_client: S3Client, bucket: str) -> Callable[[], list[str]]:
        return lambda: sorted(o["Key"] for o in moto_client.list_objects_v2(Bucket=bucket).get("Contents", []))

    @pytest.fixture
    def secrets(self) -> list[str]:
        return [ACCESS_KEY, SECRET_KEY]


class TestS3Links(LinkConformance):
    """On moto, which serves a presigned URL whatever its X-Amz-Expires says (TestS3rverLinks: refused)."""

    expiry_param = "X-Amz-Expires"


class TestS3rverLinks(LinkConformance):
    """The same links on s3rver, which refuses a SigV4 presigned URL once it has expired."""

    @pytest.fixture
    def storage(self, s3rver: str, prefix: str) -> Iterator[S3Storage]:  # noqa: F811 - the fixture imported above
        built = s3rver_storage(s3rver, prefix)
        yield built
        built.close()


class TestS3Protection(ProtectionConformance):
    """A commit's version, unprotected probes removed entirely, protection read back (tests/storage/conformance.py)."""
