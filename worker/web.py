"""The HTTP receiver: Stream's webhook, health and readiness.

The ledger write happens before the answer; queuing the Celery task happens after it (in a
background task) and may fail: the scheduler's sweep queues whatever is due and not running.

Hostile input: a body over `MAX_BODY` (by Content-Length, or counted while a chunked body streams
in) is answered 413 by the framework before it is read whole; nothing is recorded or queued unless
the key and signature are valid (`worker.webhooks`); a malformed signed event is a 400 with the
reason. The OpenAPI schema documents all of this but is not served (``app.openapi()`` builds it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis
import structlog
from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from config import Settings
from config.logging import scrub
from worker.errors import InvalidWebhook
from worker.intake import FailureNoted, Recorded, accept_delivery, enqueue_quietly
from worker.ledger import Ledger
from worker.webhooks import MAX_BODY

log = structlog.get_logger(__name__)
Enqueue = Callable[[Sequence[str]], None]
_ERROR = {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}
_STATUS = {"application/json": {"schema": {"type": "object", "properties": {"status": {"type": "string"}}}}}


def _header(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "schema": {"type": "string"},
            "description": description}


WEBHOOK_OPENAPI: dict[str, Any] = {
    "parameters": [
        _header("X-Api-Key", "the app's API key"),
        _header("X-Signature", "hex HMAC-SHA256 of the uncompressed body, keyed with the API secret"),
        _header("X-Webhook-Id", "the delivery's id, the same across Stream's retries"),
        _header("X-Webhook-Attempt", "attempt number, from 1"),
        _header("Content-Encoding", "gzip, or none"),
    ],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
    "responses": {
        "200": {"description": "known file, failure noted, or an event type the archiver ignores", "content": _STATUS},
        "202": {"description": "a new file, recorded", "content": _STATUS},
        "400": {"description": "malformed body (the reason is given)", "content": _ERROR},
        "401": {"description": "wrong X-Api-Key or X-Signature; nothing recorded", "content": _ERROR},
        "413": {"description": f"body over {MAX_BODY} bytes, compressed or not",
                "content": {**_ERROR, "text/plain": {"schema": {"type": "string"}}}},
        "503": {"description": "the ledger is unavailable: retry later", "content": _ERROR},
    },
}


def create_app(settings: Settings, ledger: Ledger, enqueue: Enqueue) -> FastAPI:
    """The ASGI app; `enqueue` hands transfer ids to the workers (best effort)."""
    app = FastAPI(title="stream-archiver", max_body_size=MAX_BODY, docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/webhooks/stream", openapi_extra=WEBHOOK_OPENAPI)
    async def stream_webhook(request: Request, background: BackgroundTasks) -> JSONResponse:
        try:
            body = await request.body()
        except ClientDisconnect:  # the sender went away mid-body: nobody reads this answer
            return JSONResponse({"error": "incomplete body"}, status_code=400)
        headers = {k.lower(): v for k, v in request.headers.items()}
        delivery = headers.get("x-webhook-id", "")[:100] or None  # unauthenticated: bounded in the log
        try:
            outcome = await run_in_threadpool(accept_delivery, settings, ledger, body, headers)
        except InvalidWebhook as exc:
            reason = scrub(str(exc))  # it may quote the body: a signed URL in the wrong field
            log.warning("webhook_refused", status=exc.status, reason=reason, webhook_id=delivery)
            return JSONResponse({"error": reason}, status_code=exc.status)
        except redis.RedisError as exc:
            log.error("webhook_not_recorded", reason=f"ledger unavailable: {exc}", webhook_id=delivery)
            return JSONResponse({"error": "ledger unavailable, retry later"}, status_code=503,
                                headers={"Retry-After": "5"})
        if isinstance(outcome, FailureNoted):
            return JSONResponse({"status": "failure_noted", "call_cid": outcome.call_cid, "kind": outcome.kind})
        if not isinstance(outcome, Recorded):
            return JSONResponse({"status": "ignored", "type": outcome})
        if outcome.to_queue:
            background.add_task(enqueue_quietly, enqueue, outcome.to_queue)
        log.info("webhook_recorded", file_id=outcome.file_id, new_file=outcome.new_file,
                 transfer_ids=outcome.transfer_ids, webhook_id=delivery)
        body_out = {"status": "accepted" if outcome.new_file else "known", "file_id": outcome.file_id,
                    "transfers": outcome.transfer_ids}
        return JSONResponse(body_out, status_code=202 if outcome.new_file else 200)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"description": "Redis does not answer", "content": _STATUS}})
    def readyz() -> JSONResponse:
        try:
            ledger.ping()
        except redis.RedisError as exc:
            return JSONResponse({"status": "unavailable", "redis": scrub(str(exc))}, status_code=503)
        return JSONResponse({"status": "ready"})

    return app
