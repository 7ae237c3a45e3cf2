"""What the OpenAPI schema says of each route beyond its path: headers, bodies and every answer.

The schema is not served (``app.openapi()`` builds it); the schemathesis test checks that the app
answers only what is written here.
"""

from __future__ import annotations

from typing import Any

from worker.intake.webhook import MAX_BODY


def _json(field: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"type": "object", "properties": {field: {"type": "string"}}}}}


ERROR, DETAIL, STATUS = _json("error"), _json("detail"), _json("status")
TEXT = {"text/plain": {"schema": {"type": "string"}}}
HTML = {"text/html": {"schema": {"type": "string"}}}


def _header(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "schema": {"type": "string"},
            "description": description}


WEBHOOK: dict[str, Any] = {
    "parameters": [
        _header("X-Api-Key", "the app's API key"),
        _header("X-Signature", "hex HMAC-SHA256 of the uncompressed body, keyed with the API secret"),
        _header("X-Webhook-Id", "the delivery's id, the same across Stream's retries"),
        _header("X-Webhook-Attempt", "attempt number, from 1"),
        _header("Content-Encoding", "not relied on: a body starting with the gzip bytes 1f 8b is inflated, "
                "any other is read as it is"),
    ],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
    "responses": {
        "200": {"description": "known file, failure noted, a file past its deadline (`expired`: a replayed "
                "delivery, nothing recorded), or an event type the archiver ignores", "content": STATUS},
        "202": {"description": "a new file, recorded", "content": STATUS},
        "400": {"description": "malformed body (the reason is given)", "content": ERROR},
        "401": {"description": "wrong X-Api-Key or X-Signature; nothing recorded", "content": ERROR},
        "413": {"description": f"body over {MAX_BODY} bytes, compressed or not", "content": ERROR},
        "503": {"description": "the ledger is unavailable: retry later", "content": ERROR},
    },
}
"""The webhook route's ``openapi_extra``: its body is read raw (to check the signature), so FastAPI
cannot describe it."""

READYZ: dict[int | str, dict[str, Any]] = {503: {"description": "Redis does not answer", "content": STATUS}}

METRICS: dict[int | str, dict[str, Any]] = {
    200: {"description": "Prometheus text format", "content": TEXT},
    401: {"description": "ARCHIVER_METRICS_TOKEN is set and was not sent as a Bearer token", "content": TEXT},
    503: {"description": "Redis does not answer", "content": TEXT},
}

STATUS_PAGE: dict[int | str, dict[str, Any]] = {
    200: {"description": "the status page", "content": HTML},
    401: {"description": "no or wrong ARCHIVER_STATUS_TOKEN (Bearer, or basic-auth password)", "content": ERROR},
    404: {"description": "the status page is off: ARCHIVER_STATUS_TOKEN is not set", "content": DETAIL},
    503: {"description": "Redis does not answer", "content": ERROR},
}

FILES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the file, streamed (`Accept-Ranges: bytes`)", "content": {"application/octet-stream": {
        "schema": {"type": "string", "format": "binary"}}}},
    206: {"description": "the byte range asked for (`Range`)"},
    400: {"description": "a malformed `Range`", "content": TEXT},
    403: {"description": "not a valid link: altered, made with another key, or expired (which, is not said)",
          "content": TEXT},
    404: {"description": "a valid link whose file is gone, or whose storage is no longer a local one here",
          "content": TEXT},
    416: {"description": "a `Range` past the end of the file", "content": TEXT},
    503: {"description": "Redis or the disk does not answer", "content": TEXT},
}

LINKS: dict[int | str, dict[str, Any]] = {
    200: {"description": "to a browser's form (`Accept: text/html`): a page that opens the fresh link",
          "content": HTML},
    303: {"description": "`Location` is a fresh download link (a bearer credential until it expires)"},
    401: {"description": "no or wrong ARCHIVER_STATUS_TOKEN (Bearer, or basic-auth password)", "content": ERROR},
    403: {"description": "a browser's request from another site (`Sec-Fetch-Site`, or `Origin` not this host)",
          "content": ERROR},
    404: {"description": "no such transfer, or the status page is off (ARCHIVER_STATUS_TOKEN is not set)",
          "content": ERROR},
    409: {"description": "no link for it: not archived, its object gone, its storage cannot sign, or local disk "
                         "without public_url (the reason is given)", "content": ERROR},
    502: {"description": "the storage refused to help sign (credentials, permission)", "content": ERROR},
    503: {"description": "Redis or the storage does not answer", "content": ERROR},
}
