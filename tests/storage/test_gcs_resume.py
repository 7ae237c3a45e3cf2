"""GCS resume across attempts beyond the conformance suite, against gcp-storage-emulator (its resumable
protocol answers the status query, ``Content-Range: bytes */*``, with 308 and ``Range`` as GCS does): a
session holding more than the state goes on from where the session stands, the bytes below dropped, not
sent twice; a session URL outside the storage's endpoint is never asked; the URL is never logged.

The emulator answers a status query of a session holding nothing with ``Range: bytes=0-0`` (GCS sends no
Range): a state always holds at least one 256 KiB chunk, so that never reads as enough.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from tests.storage.conformance import VIDEO, MiB, durable_after, hasher_for, read, uneven
from tests.support.gcs import gcs_storage, watch
from worker.storage.base import UploadState
from worker.storage.gcs.storage import GCSStorage

BACKEND = "gcs"


@pytest.fixture
def second(gcs_emulator: str, bucket: str) -> Iterator[GCSStorage]:
    built = gcs_storage(gcs_emulator, bucket, "p/")
    yield built
    built.close()


def test_a_session_holding_more_than_the_state_goes_on_from_where_it_stands(
    storage: GCSStorage, second: GCSStorage,
) -> None:
    """The state saved after the first chunk, the writer detached after the second: the resumed writer
    drops the second chunk's bytes as they are written again, sends from the session's 10 MiB, and the
    object is byte-identical with its CRC32C checked; its durable state covers the dropped bytes too."""
    data = os.urandom(16 * MiB + 3)
    writer = storage.open_writer("r/a.mp4", content_type=VIDEO, metadata={})
    for chunk in uneven(data[: 6 * MiB]):
        writer.write(chunk)
    state = durable_after(writer, 5 * MiB)
    for chunk in uneven(data[6 * MiB : 11 * MiB]):
        writer.write(chunk)
    writer.detach()
    held = writer.durable()
    assert state.offset == 5 * MiB and held is not None and held.offset == 10 * MiB
    traffic = watch(second)
    with capture_logs() as logs:
        resumed = second.resume_writer("r/a.mp4", state, content_type=VIDEO, metadata={})
        assert resumed is not None
        for chunk in uneven(data[state.offset :]):
            resumed.write(chunk)
        progress = resumed.durable()
        assert progress is not None and progress.pieces[:2] == held.pieces
        hasher = hasher_for(second)
        hasher.update(data)
        resumed.commit(hasher.digests())
    assert [c.split("/")[0] for c in traffic.chunks()] == ["bytes *", f"bytes {10 * MiB}-{15 * MiB - 1}",
                                                           f"bytes {15 * MiB}-{len(data) - 1}"]
    assert read(storage, "r/a.mp4") == data
    assert str(state.handle["session"]) not in repr(logs) and "upload_id" not in repr(logs)


def test_a_session_url_elsewhere_is_not_asked(storage: GCSStorage) -> None:
    """A state whose session is not at the storage's endpoint is refused before any request: the
    authorized session would send its token there."""
    traffic = watch(storage)
    state = UploadState.from_json(
        '{"offset": 262144, "pieces": [[262144, "AAAAAA=="]], "handle": {"session": "http://attacker.test/x"}}')
    assert storage.resume_writer("r/b.mp4", state, content_type=VIDEO, metadata={}) is None
    assert traffic.sent == []
