"""S3Storage joins the conformance suite, against a real moto_server."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from mypy_boto3_s3 import S3Client

from tests.storage.conformance import CRLF_KEY, LONG_KEY, StorageConformance
from tests.support.moto import ACCESS_KEY, SECRET_KEY

BACKEND = "s3"


class TestS3(StorageConformance):
    refused_keys = frozenset({CRLF_KEY, LONG_KEY})

    @pytest.fixture
    def leftovers(self, moto_client: S3Client, bucket: str) -> Callable[[], list[str]]:
        return lambda: [u["Key"] for u in moto_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]

    @pytest.fixture
    def raw_keys(self, moto_client: S3Client, bucket: str) -> Callable[[], list[str]]:
        return lambda: sorted(o["Key"] for o in moto_client.list_objects_v2(Bucket=bucket).get("Contents", []))

    @pytest.fixture
    def secrets(self) -> list[str]:
        return [ACCESS_KEY, SECRET_KEY]
