"""The HTTP receiver: Stream's webhook, health and readiness; /metrics and the status page (GET /).

The ledger write happens before the answer, in the one thread hop a delivery takes; queuing the
Celery task and counting the outcome happen after it (`AfterAnswer`), and the queuing may fail: the
scheduler's sweep queues whatever is due and not running.

Hostile input: a body over `MAX_BODY` (by Content-Length, or counted while a chunked body streams
in) is answered 413 by our own ASGI middleware (`worker.edge.web.body_limit`, whatever FastAPI's version)
before it is read whole; nothing is recorded or queued unless
the key and signature are valid (`worker.intake.webhook`); a malformed signed event is a 400 with the
reason. The OpenAPI schema documents all of this but is not served (``app.openapi()`` builds it).

Every webhook answer is counted by outcome, in Redis, after the answer (by the handler, or by
`WebhookOutcomes` for the answers the framework gave);
/metrics reads the whole cluster's figures from Redis (`worker.monitoring.metrics`).
"""

from __future__ import annotations

import gc
import math
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import redis
import structlog
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config import Settings
from config.celery import TRANSFER_QUEUE
from config.logging import scrub
from worker.edge.web import status_page
from worker.edge.web.body_limit import BodyLimit
from worker.errors import InvalidWebhook, PayloadTooLarge
from worker.intake.record import Expired, FailureNoted, Recorded, accept_delivery, enqueue_quietly
from worker.intake.webhook import MAX_BODY
from worker.ledger.connection import connect
from worker.ledger.models import Enqueue
from worker.ledger.store import Ledger
from worker.monitoring.metrics import ArchiverCollector, registry_for
from worker.monitoring.metrics import render as render_metrics
from worker.monitoring.stats import stats_for

log = structlog.get_logger(__name__)
_ERROR = {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}
_DETAIL = {"application/json": {"schema": {"type": "object", "properties": {"detail": {"type": "string"}}}}}
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
        _header("Content-Encoding", "not relied on: a body starting with the gzip bytes 1f 8b is inflated, "
                "any other is read as it is"),
    ],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
    "responses": {
        "200": {"description": "known file, failure noted, a file past its deadline (`expired`: a replayed "
                "delivery, nothing recorded), or an event type the archiver ignores", "content": _STATUS},
        "202": {"description": "a new file, recorded", "content": _STATUS},
        "400": {"description": "malformed body (the reason is given)", "content": _ERROR},
        "401": {"description": "wrong X-Api-Key or X-Signature; nothing recorded", "content": _ERROR},
        "413": {"description": f"body over {MAX_BODY} bytes, compressed or not", "content": _ERROR},
        "503": {"description": "the ledger is unavailable: retry later", "content": _ERROR},
    },
}


WEBHOOK_PATH = "/webhooks/stream"
_OUTCOME = "webhook_outcome"  # the handler leaves its outcome in the request's state under this name


class WebhookOutcomes:
    """Counts the webhook answers the handler did not: a 413 `BodyLimit` gave before the handler
    ran is ``too_large``, a 400 it gave ``malformed``. `count` is the handler's own (after the answer)."""

    def __init__(self, app: ASGIApp, count: Callable[[str], None]) -> None:
        self.app, self.count = app, count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != WEBHOOK_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            counted = cast(dict[str, Any], scope.get("state") or {}).get(_OUTCOME)  # the handler counted it
            outcome = None if counted else {413: "too_large", 400: "malformed", 401: "refused",
                                            503: "unavailable"}.get(status)
            if outcome:
                self.count(outcome)


def _refusal(exc: InvalidWebhook) -> str:
    if isinstance(exc, PayloadTooLarge):
        return "too_large"
    return "refused" if exc.status == 401 else "malformed"


class AfterAnswer:
    """Work a webhook's answer need not wait for (the Celery publish, about half a millisecond; the
    outcome's counter), run in order on one thread of its own. The publish is best effort like every
    enqueue (`enqueue_quietly`): the scheduler's sweep queues whatever is due."""

    def __init__(self) -> None:
        self._work: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="after-answer", daemon=True)
        self._thread.start()

    def later(self, action: Callable[..., None], *args: Any) -> None:
        self._work.put((action, args))

    def close(self, timeout: float = 10.0) -> None:
        """Run what is waiting, then stop."""
        self._work.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (work := self._work.get()) is not None:
            action, args = work
            try:
                action(*args)
            except Exception as exc:  # noqa: BLE001 - the answer is gone: log, and keep serving
                log.warning("after_answer_failed", action=getattr(action, "__name__", str(action)), error=str(exc))


def create_app(settings: Settings, ledger: Ledger, enqueue: Enqueue) -> FastAPI:
    """The ASGI app; `enqueue` hands transfer ids to the workers (best effort, after the answer)."""
    after = AfterAnswer()
    stats = stats_for(ledger)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Everything imported and built so far lives as long as the process: keep it out of the
        # garbage collector's full passes, which otherwise stall a request now and then (p99).
        gc.freeze()
        yield
        await run_in_threadpool(after.close)

    app = FastAPI(title="stream-archiver", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    def count(outcome: str) -> None:
        after.later(stats.webhook, outcome)

    app.add_middleware(BodyLimit, limit=MAX_BODY)  # inside WebhookOutcomes, which counts its 413s
    app.add_middleware(WebhookOutcomes, count=count)

    def counted(outcome: str, answer: JSONResponse) -> tuple[str, JSONResponse]:
        count(outcome)
        return outcome, answer

    def handle(body: bytes, headers: dict[str, str]) -> tuple[str, JSONResponse]:
        """Everything a delivery needs off the event loop, in one thread hop: authenticate, record,
        log; counting and queuing come after the answer. Returns the outcome's name and the answer."""
        delivery = headers.get("x-webhook-id", "")[:100] or None  # unauthenticated: bounded in the log
        try:
            outcome = accept_delivery(settings, ledger, body, headers)
        except InvalidWebhook as exc:
            reason = scrub(str(exc))  # it may quote the body: a signed URL in the wrong field
            log.warning("webhook_refused", status=exc.status, reason=reason, webhook_id=delivery)
            return counted(_refusal(exc), JSONResponse({"error": reason}, status_code=exc.status))
        except redis.RedisError as exc:
            log.error("webhook_not_recorded", reason=f"ledger unavailable: {exc}", webhook_id=delivery)
            return counted("unavailable", JSONResponse(
                {"error": "ledger unavailable, retry later"}, status_code=503, headers={"Retry-After": "5"}))
        if isinstance(outcome, FailureNoted):
            return counted("failure_noted", JSONResponse(
                {"status": "failure_noted", "call_cid": outcome.call_cid, "kind": outcome.kind}))
        if isinstance(outcome, Expired):
            log.warning("webhook_expired", file_id=outcome.file_id, call_cid=outcome.call_cid,
                        expires_at=outcome.expires_at.isoformat(), webhook_id=delivery,
                        note="the file ended longer than retention ago: a replayed delivery; nothing recorded")
            return counted("expired", JSONResponse({"status": "expired", "file_id": outcome.file_id}))
        if not isinstance(outcome, Recorded):
            return counted("ignored", JSONResponse({"status": "ignored", "type": outcome}))
        if outcome.to_queue:
            after.later(enqueue_quietly, enqueue, outcome.to_queue)
        log.info("webhook_recorded", file_id=outcome.file_id, new_file=outcome.new_file,
                 transfer_ids=outcome.transfer_ids, webhook_id=delivery)
        body_out = {"status": "accepted" if outcome.new_file else "known", "file_id": outcome.file_id,
                    "transfers": outcome.transfer_ids}
        return counted(_outcome_of(outcome), JSONResponse(body_out, status_code=202 if outcome.new_file else 200))

    @app.post("/webhooks/stream", openapi_extra=WEBHOOK_OPENAPI)
    async def stream_webhook(request: Request) -> JSONResponse:
        try:
            body = await request.body()
        except ClientDisconnect:  # the sender went away mid-body: nobody reads this answer
            return JSONResponse({"error": "incomplete body"}, status_code=400)
        outcome, answer = await run_in_threadpool(handle, body, {k.lower(): v for k, v in request.headers.items()})
        request.state.webhook_outcome = outcome
        return answer

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"description": "Redis does not answer", "content": _STATUS}})
    def readyz() -> JSONResponse:
        try:
            ledger.redis.ping()
        except redis.RedisError as exc:
            return JSONResponse({"status": "unavailable", "redis": scrub(str(exc))}, status_code=503)
        return JSONResponse({"status": "ready"})

    _add_monitoring(app, settings, ledger)
    return app


def _outcome_of(outcome: Recorded | FailureNoted | Expired | str) -> str:
    if isinstance(outcome, FailureNoted):
        return "failure_noted"
    if isinstance(outcome, Expired):
        return "expired"
    if isinstance(outcome, Recorded):
        return "accepted" if outcome.new_file else "known"
    return "ignored"


class CachedScrape:
    """The last /metrics body, reused for `ttl` seconds in this process (0: never); one scrape reads
    Redis at a time, and those waiting meanwhile get its result. A failure is not kept."""

    def __init__(self, render: Callable[[], bytes], ttl: float) -> None:
        self.render, self.ttl = render, ttl
        self.lock = threading.Lock()
        self.body, self.at = b"", -math.inf

    def get(self) -> bytes:
        asked = time.monotonic()
        with self.lock:
            if self.ttl > 0 and (self.at >= asked or time.monotonic() - self.at < self.ttl):
                return self.body  # fresh enough, or rendered while this request waited for the lock
            body = self.render()
            self.body, self.at = body, time.monotonic()
            return body


def _metrics_refusal(header: str | None, token: str) -> str | None:
    """Why a /metrics request may not have the figures (None: it may)."""
    scheme, _, sent = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not sent.strip():
        return "/metrics needs the metrics token: send ARCHIVER_METRICS_TOKEN as `Authorization: Bearer …`"
    if not status_page.same_token(sent.strip(), token):
        return "wrong token: the token sent is not ARCHIVER_METRICS_TOKEN"
    return None


def _add_monitoring(app: FastAPI, settings: Settings, ledger: Ledger) -> None:
    """GET /metrics (always), GET / and /static/* (only with ARCHIVER_STATUS_TOKEN set)."""
    broker = ledger.redis if settings.broker_url == settings.env.redis_url else connect(
        settings.broker_url, fail_fast=True, name="archiver-metrics")
    configured = tuple(storage.name for storage in settings.archive.effective_storages())
    registry = registry_for(ArchiverCollector(ledger.redis, broker, TRANSFER_QUEUE, settings.archive.retention,
                                              ledger.prefix, configured))

    text = {"text/plain": {"schema": {"type": "string"}}}
    scrape = CachedScrape(lambda: render_metrics(registry), settings.archive.metrics_cache.total_seconds())
    metrics_secret = settings.env.archiver_metrics_token
    metrics_token = metrics_secret.get_secret_value() if metrics_secret is not None else ""

    @app.get("/metrics", response_class=Response, responses={
        200: {"description": "Prometheus text format", "content": text},
        401: {"description": "ARCHIVER_METRICS_TOKEN is set and was not sent as a Bearer token", "content": text},
        503: {"description": "Redis does not answer", "content": text}})
    def metrics(request: Request) -> Response:
        if metrics_token and (refusal := _metrics_refusal(request.headers.get("authorization"), metrics_token)):
            return Response(refusal + "\n", status_code=401, media_type="text/plain",
                            headers={"WWW-Authenticate": 'Bearer realm="archiver-metrics"'})
        try:
            body = scrape.get()
        except redis.RedisError as exc:
            return Response(f"ledger unavailable: {scrub(str(exc))}\n", status_code=503, media_type="text/plain")
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    secret = settings.env.archiver_status_token
    token = secret.get_secret_value() if secret is not None else ""

    @app.get("/", response_class=HTMLResponse, responses={
        200: {"description": "the status page", "content": {"text/html": {"schema": {"type": "string"}}}},
        401: {"description": "no or wrong ARCHIVER_STATUS_TOKEN (Bearer, or basic-auth password)", "content": _ERROR},
        404: {"description": "the status page is off: ARCHIVER_STATUS_TOKEN is not set", "content": _DETAIL},
        503: {"description": "Redis does not answer", "content": _ERROR}})
    def status(request: Request) -> Response:
        if not token:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        header = request.headers.get("authorization")
        if not status_page.authorized(header, token):
            return JSONResponse({"error": status_page.refusal(header)}, status_code=401, headers=status_page.CHALLENGE)
        try:
            page = status_page.render(status_page.read_status(ledger.redis, settings.archive.at_risk_margin,
                                                              ledger.prefix))
        except redis.RedisError as exc:
            return JSONResponse({"error": f"ledger unavailable: {scrub(str(exc))}"}, status_code=503)
        return HTMLResponse(page, headers=status_page.HEADERS)

    @app.get("/static/{name}", include_in_schema=False)  # the status page's script and styles
    def static(name: str) -> Response:
        found = status_page.static_file(name) if token else None
        if found is None:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        content, media_type = found
        return Response(content, media_type=media_type,
                        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})
