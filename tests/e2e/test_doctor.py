"""`archiver doctor` says what is wrong, and exits non-zero when anything is."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import Archiver, local_storage, s3_storage
from tests.fakestream.server import FakeStream
from tests.support.moto import SECRET_KEY

pytestmark = pytest.mark.e2e


def test_doctor_reports_each_dependency(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path, moto_server: str, bucket: str
) -> None:
    service = archiver([local_storage(tmp_path / "disk"), s3_storage(moto_server, bucket),
                        s3_storage(moto_server, "absent-bucket-for-doctor", name="broken")])
    result = service.cli("doctor")
    assert result.returncode == 1
    text = " ".join(result.stdout.split())
    assert "accepts STREAM_API_KEY and STREAM_API_SECRET" in text
    assert "appendonly is 'no'" in text  # the tests' Redis keeps nothing on disk
    assert "storage broken" in text and "missing_bucket" in text
    assert "storage disk" in text and "storage s3" in text
    assert SECRET_KEY not in result.stdout + result.stderr


def test_doctor_names_refused_stream_credentials(archiver: Callable[..., Archiver], tmp_path: Path) -> None:
    service = archiver([local_storage(tmp_path / "disk")])
    service.env["STREAM_API_SECRET"] = "a-wrong-secret-that-is-long-enough-0123456789"
    result = service.cli("doctor")
    assert result.returncode == 1
    assert "refused the API key or secret" in " ".join(result.stdout.split())
