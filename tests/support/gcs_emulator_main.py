"""gcp-storage-emulator, with the one piece of the resumable protocol it lacks: cancelling a session.

Real GCS answers ``DELETE <session URI>`` with 499 and forgets the upload
(https://cloud.google.com/storage/docs/performing-resumable-uploads#cancel-upload); the emulator
(2026.7.19) routes only POST and PUT there and answers 501. This adds the DELETE, so tests can check
that an aborted upload leaves no session behind. Run as ``python -m tests.support.gcs_emulator_main
start --host … --port … --in-memory``.
"""

from __future__ import annotations

import sys
from typing import Any, NamedTuple

from gcp_storage_emulator import server, settings
from gcp_storage_emulator.__main__ import main
from gcp_storage_emulator.exceptions import NotFound


class _Status(NamedTuple):
    value: int
    phrase: str


CLIENT_CLOSED_REQUEST = _Status(499, "Client Closed Request")  # not in http.HTTPStatus


def cancel_upload(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> None:
    upload_id = request.query.get("upload_id", [""])[0]
    try:
        storage.get_resumable_file_obj(upload_id)
    except NotFound:
        response.status = server.HTTPStatus.NOT_FOUND
        return
    storage.delete_resumable_file_obj(upload_id)
    response.status = CLIENT_CLOSED_REQUEST


def add_cancel_route() -> None:
    upload_route = rf"^{settings.UPLOAD_API_ENDPOINT}/b/(?P<bucket_name>[-.\w]+)/o$"
    for pattern, methods in server.HANDLERS:
        if pattern == upload_route:
            methods[server.DELETE] = cancel_upload
            return
    raise RuntimeError("gcp-storage-emulator's upload route changed: update tests/support/gcs_emulator_main.py")


if __name__ == "__main__":
    add_cancel_route()
    sys.exit(main())
