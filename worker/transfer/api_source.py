"""Files Stream's API serves itself (a session's stats report: GetCallReport), copied into a storage.

Such a file has no signed URL: its source is Stream's REST client (`worker.stream.client`: its
auth, retries and shared request budget), which answers with the whole body. Reports are small
JSON documents, so the body is fetched into memory and written in one piece; there is nothing to
resume and no URL to refresh. Each destination's transfer fetches its own copy: Stream's answer
may differ between two requests in its ``duration`` field only.

Errors, as for a download: Stream saying the session has no such file (404, or 400 with code 16)
is SourceMissing (`lost` after the file's deadline, retried before it); Stream unavailable is
StreamUnavailable (retried); any other refusal is StreamRefused (`failed`: an operator must act).
"""

from __future__ import annotations

from collections.abc import Mapping

from worker.errors import KeyTaken, SourceMissing, StreamRefused
from worker.files import ArtefactKind
from worker.ledger.lease import Heartbeat
from worker.runtime import Runtime
from worker.storage import Storage
from worker.storage.checksums import Digests, Hasher
from worker.transfer.taken import resolve_taken


def fetch(runtime: Runtime, kind: ArtefactKind, file_record: Mapping[str, str]) -> bytes:
    """The file's body as Stream's API serves it now (see the module docstring for the errors)."""
    assert kind.api_source is not None
    call_cid, session_id = file_record["call_cid"], file_record.get("session_id", "")
    try:
        return runtime.stream.file_from_api(call_cid, kind.api_source, session_id)
    except StreamRefused as exc:
        if exc.gone:
            raise SourceMissing(f"Stream has no {kind.name} of session {session_id} of {call_cid}: {exc}") from None
        raise


def write_body(storage: Storage, key: str, body: bytes, *, content_type: str, metadata: Mapping[str, str],
               lease: Heartbeat, overwrite: bool = False, noted: tuple[int, str] | None = None) -> Digests:
    """Write `body` as a new object under `key` and commit it (create-only unless `overwrite`); the
    digests archived: an object already at the key counts when it is `body`, or the bytes an earlier
    attempt `noted` (`worker.transfer.taken`). Raises KeyTaken when other bytes are there."""
    native = storage.native_checksum_for(len(body))
    hasher = Hasher((native,) if native else ())
    hasher.update(body)
    digests = hasher.digests()
    try:
        with storage.open_writer(key, content_type=content_type, metadata=metadata, size_hint=len(body),
                                 overwrite=overwrite) as writer:
            writer.write(body)
            lease.progress()
            lease.note_commit(digests.size, digests.sha256)
            writer.commit(digests)
    except KeyTaken as taken:
        return resolve_taken(storage, key, digests, noted, taken)
    return digests
