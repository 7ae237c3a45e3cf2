"""The HTTP receiver: Stream's webhook, health and readiness.

The ledger write happens before the answer; queuing the Celery task happens after it (in a
background task) and may fail: the scheduler's sweep queues whatever is due and not running.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import redis
import structlog
from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from config import Settings
from worker.errors import InvalidWebhook
from worker.intake import FailureNoted, Recorded, accept_delivery, enqueue_quietly
from worker.ledger import Ledger
from worker.webhooks import MAX_BODY

log = structlog.get_logger(__name__)
Enqueue = Callable[[Sequence[str]], None]


def create_app(settings: Settings, ledger: Ledger, enqueue: Enqueue) -> FastAPI:
    """The ASGI app; `enqueue` hands transfer ids to the workers (best effort)."""
    app = FastAPI(title="stream-archiver", max_body_size=MAX_BODY, docs_url=None, redoc_url=None)

    @app.post("/webhooks/stream")
    async def stream_webhook(request: Request, background: BackgroundTasks) -> JSONResponse:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        delivery = headers.get("x-webhook-id")
        try:
            outcome = await run_in_threadpool(accept_delivery, settings, ledger, body, headers)
        except InvalidWebhook as exc:
            log.warning("webhook_refused", status=exc.status, reason=str(exc), webhook_id=delivery)
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
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

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        try:
            ledger.ping()
        except redis.RedisError as exc:
            return JSONResponse({"status": "unavailable", "redis": str(exc)}, status_code=503)
        return JSONResponse({"status": "ready"})

    return app
