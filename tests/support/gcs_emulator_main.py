"""gcp-storage-emulator, with two pieces of GCS it lacks: cancelling a resumable session, and the
create-only precondition ``ifGenerationMatch=0`` on uploads.

Real GCS answers ``DELETE <session URI>`` with 499 and forgets the upload
(https://cloud.google.com/storage/docs/performing-resumable-uploads#cancel-upload); the emulator
(2026.7.19) routes only POST and PUT there and answers 501. This adds the DELETE, so tests can check
that an aborted upload leaves no session behind.

Real GCS refuses an upload carrying ``ifGenerationMatch=0`` with 412 (``conditionNotMet``) when the
name already holds a live object (https://cloud.google.com/storage/docs/request-preconditions); the
emulator ignores the parameter (any value) and overwrites. This adds that answer where GCS makes the
object: a single-request upload, and the final chunk of a resumable one (the one that gives the
total size; the parameter rides in the session URI, which GCS returns with the query it was opened
with). ``--stock-preconditions`` leaves the emulator's own behaviour (for the test that measures it).
Run as ``python -m tests.support.gcs_emulator_main start --host … --port … --in-memory``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NamedTuple

from gcp_storage_emulator import server, settings
from gcp_storage_emulator.__main__ import main
from gcp_storage_emulator.exceptions import NotFound

Handler = Callable[..., Any]
STOCK_PRECONDITIONS = "--stock-preconditions"


class _Status(NamedTuple):
    value: int
    phrase: str


CLIENT_CLOSED_REQUEST = _Status(499, "Client Closed Request")  # not in http.HTTPStatus
CONDITION_NOT_MET = {
    "error": {
        "code": 412,
        "message": "At least one of the pre-conditions you specified did not hold.",
        "errors": [{"message": "At least one of the pre-conditions you specified did not hold.",
                    "domain": "global", "reason": "conditionNotMet", "locationType": "header",
                    "location": "If-Match"}],
    }
}


def cancel_upload(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> None:
    upload_id = request.query.get("upload_id", [""])[0]
    try:
        storage.get_resumable_file_obj(upload_id)
    except NotFound:
        response.status = server.HTTPStatus.NOT_FOUND
        return
    storage.delete_resumable_file_obj(upload_id)
    response.status = CLIENT_CLOSED_REQUEST


def _exists(storage: Any, bucket: str, name: str) -> bool:
    try:
        storage.get_file_obj(bucket, name)
    except NotFound:
        return False
    return True


def _made_here(request: Any, storage: Any) -> tuple[str, str] | None:
    """(bucket, name) of the object this upload request makes now, or None when it makes none yet
    (a resumable session opened, a chunk before the last, a status query)."""
    if request.query.get("uploadType") == ["multipart"] and isinstance(request.data, dict):
        name = request.query.get("name", [None])[0] or request.data.get("meta", {}).get("name")
        return request.params["bucket_name"], name
    if "upload_id" in request.query and not request.get_header("Content-Range", "").endswith("/*"):
        try:
            obj = storage.get_resumable_file_obj(request.query["upload_id"][0])
        except NotFound:
            return None
        return obj["bucket"], obj["name"]
    return None


def create_only(handler: Handler) -> Handler:
    """`handler`, answering 412 conditionNotMet to an upload with ``ifGenerationMatch=0`` that would
    make an object whose name is taken."""

    def checked(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
        if request.query.get("ifGenerationMatch") == ["0"]:
            made = _made_here(request, storage)
            if made is not None and _exists(storage, *made):
                response.status = server.HTTPStatus.PRECONDITION_FAILED
                response.json(CONDITION_NOT_MET)
                return None
        return handler(request, response, storage, *args, **kwargs)

    return checked


def patch_upload_route(*, preconditions: bool) -> None:
    upload_route = rf"^{settings.UPLOAD_API_ENDPOINT}/b/(?P<bucket_name>[-.\w]+)/o$"
    for pattern, methods in server.HANDLERS:
        if pattern == upload_route:
            methods[server.DELETE] = cancel_upload
            if preconditions:
                methods[server.POST] = create_only(methods[server.POST])
                methods[server.PUT] = create_only(methods[server.PUT])
            return
    raise RuntimeError("gcp-storage-emulator's upload route changed: update tests/support/gcs_emulator_main.py")


if __name__ == "__main__":
    arguments = sys.argv[1:]
    stock = STOCK_PRECONDITIONS in arguments
    patch_upload_route(preconditions=not stock)
    sys.exit(main([a for a in arguments if a != STOCK_PRECONDITIONS]))
