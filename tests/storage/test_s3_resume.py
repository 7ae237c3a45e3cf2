"""S3 resume across attempts beyond the conformance suite, against moto_server: ListParts read page by page,
only the parts past the state sent again (counted on the wire, by botocore's own events), and an upload
resumed only with the settings CreateMultipartUpload fixed (see "Resume" in `worker.storage.s3.storage`).

s3rver lacks ListParts, ListMultipartUploads and AbortMultipartUpload (/work/shared/EMULATORS.md): a resumed
upload cannot be checked there, so every resume test runs on moto.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from mypy_boto3_s3 import S3Client

from tests.storage.conformance import VIDEO, MiB, durable_after, hasher_for, read, uneven
from tests.support.moto import create_bucket, s3_storage
from worker.storage.base import UploadState
from worker.storage.s3.storage import S3Storage

BACKEND = "s3"
LOCK = {"s3_object_lock_mode": "COMPLIANCE", "s3_object_lock_days": 3, "s3_legal_hold": True}


def detached(storage: S3Storage, key: str, data: bytes, **settings: Any) -> UploadState:
    """`data` written to a fresh writer, detached once every part sent is acknowledged: its durable state."""
    writer = storage.open_writer(key, content_type=VIDEO, metadata={"call_cid": "c"}, **settings)
    for chunk in uneven(data):
        writer.write(chunk)
    durable_after(writer, len(data) // (5 * MiB) * 5 * MiB)  # every full part
    writer.detach()
    state = writer.durable()
    assert state is not None
    return state


def count_parts(storage: S3Storage) -> list[int]:
    """The part numbers `storage` sends from now on (observed through botocore's event hooks)."""
    sent: list[int] = []

    def note(params: dict[str, Any], **_: Any) -> None:
        sent.append(int(params["PartNumber"]))

    storage.client.meta.events.register("before-parameter-build.s3.UploadPart", note)
    return sent


@pytest.fixture
def second(moto_server: str, bucket: str) -> Iterator[S3Storage]:
    built = s3_storage(moto_server, bucket, "p/")
    yield built
    built.close()


def test_a_resumed_upload_lists_every_page_and_sends_only_the_rest(
    storage: S3Storage, second: S3Storage, moto_client: S3Client, bucket: str,
) -> None:
    """Three parts acknowledged, then detached; another instance reads ListParts one part per page, sends
    only part 4, and completes: the object is byte-identical, with its whole-object CRC32C."""
    data = os.urandom(15 * MiB + 1)
    state = detached(storage, "r/a.mp4", data[: 15 * MiB])
    assert [piece.size for piece in state.pieces] == [5 * MiB] * 3
    second.bucket.list_parts_page = 1  # three pages for three parts
    sent = count_parts(second)
    resumed = second.resume_writer("r/a.mp4", state, content_type=VIDEO, metadata={"call_cid": "c"})
    assert resumed is not None
    resumed.write(data[state.offset :])
    hasher = hasher_for(second)
    hasher.update(data)
    digests = hasher.digests()
    resumed.commit(digests)
    assert sent == [4]
    assert read(storage, "r/a.mp4") == data
    assert storage.stat("r/a.mp4").checksums.get("crc32c") == digests.crc32c
    assert moto_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_part_missing_from_the_listing_is_not_resumed(storage: S3Storage, second: S3Storage) -> None:
    """A state naming a part S3 does not list (here: its ETag differs) is refused; the true one resumes."""
    state = detached(storage, "r/b.mp4", os.urandom(10 * MiB))
    etags = list(state.handle["etags"])
    other = UploadState(state.offset, state.pieces, {**state.handle, "etags": [*etags[:-1], '"0"']})
    assert second.resume_writer("r/b.mp4", other, content_type=VIDEO, metadata={"call_cid": "c"}) is None
    assert second.resume_writer("r/c.mp4", state, content_type=VIDEO, metadata={"call_cid": "c"}) is None  # other key
    resumed = second.resume_writer("r/b.mp4", state, content_type=VIDEO, metadata={"call_cid": "c"})
    assert resumed is not None
    resumed.abort()


def test_an_upload_is_resumed_only_with_the_settings_it_was_created_with(
    moto_server: str, moto_client: S3Client,
) -> None:
    """Metadata, content type and the Object Lock are fixed by CreateMultipartUpload (and S3 lists none of
    them for a pending upload): a resume asking for others gets None, and the caller starts afresh."""
    bucket = create_bucket(moto_client, object_lock=True)
    locked = s3_storage(moto_server, bucket, "p/", **LOCK)
    try:
        state = detached(locked, "r/locked.mp4", os.urandom(10 * MiB))
        assert locked.resume_writer("r/locked.mp4", state, content_type=VIDEO, metadata={"call_cid": "c"},
                                    protect=False) is None
        assert locked.resume_writer("r/locked.mp4", state, content_type=VIDEO, metadata={"call_cid": "d"}) is None
        assert locked.resume_writer("r/locked.mp4", state, content_type="video/webm",
                                    metadata={"call_cid": "c"}) is None
        resumed = locked.resume_writer("r/locked.mp4", state, content_type=VIDEO, metadata={"call_cid": "c"})
        assert resumed is not None
        resumed.abort()
    finally:
        locked.close()
