"""POST /webhooks/stream: Stream's deliveries, recorded before the answer, counted after it.

The ledger write happens before the answer, in the one thread hop a delivery takes; queuing the
Celery task and counting the outcome happen after it (`AfterAnswer`), and the queuing may fail: the
scheduler's sweep queues whatever is due and not running. Nothing is recorded or queued unless the
key and signature are valid (`worker.intake.webhook`); a malformed signed event is a 400 with the
reason.

Every webhook answer is counted by outcome (``accepted``, ``known``, ``ignored``, ``expired``,
``failure_noted``, ``malformed``, ``refused``, ``too_large``, ``unavailable``): by the handler
(`respond` names the outcome), or by `WebhookOutcomes` for the answers the framework gave.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, cast

import redis
import structlog
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config import Settings
from config.logging import scrub
from worker.edge.web import paths
from worker.errors import InvalidWebhook
from worker.intake.record import Expired, FailureNoted, Recorded, accept_delivery, enqueue_quietly
from worker.ledger.models import Enqueue
from worker.ledger.store import Ledger
from worker.monitoring.stats import Stats

log = structlog.get_logger(__name__)

Result = Recorded | FailureNoted | Expired | str
"""What `accept_delivery` returns (a str: the type of an event the archiver ignores)."""
Failure = InvalidWebhook | redis.RedisError | ClientDisconnect
"""Why a delivery was not taken: refused (401, 400, 413), the ledger down (503), the sender gone (400)."""

_REFUSED = {400: "malformed", 401: "refused", 413: "too_large", 503: "unavailable"}  # status → outcome
_OUTCOME = "webhook_outcome"  # the handler leaves its outcome in the request's state under this name


def respond(result: Result | Failure, delivery: str | None) -> tuple[str, JSONResponse]:
    """The one map from what became of a delivery to its outcome (the counter's label), its log line
    and its HTTP answer; `delivery` is the X-Webhook-Id, for the log."""
    match result:
        case ClientDisconnect():  # the sender went away mid-body: nobody reads this answer
            return "malformed", JSONResponse({"error": "incomplete body"}, status_code=400)
        case InvalidWebhook(status=status):
            reason = scrub(str(result))  # it may quote the body: a signed URL in the wrong field
            log.warning("webhook_refused", status=status, reason=reason, webhook_id=delivery)
            return _REFUSED.get(status, "malformed"), JSONResponse({"error": reason}, status_code=status)
        case redis.RedisError():
            log.error("webhook_not_recorded", reason=f"ledger unavailable: {result}", webhook_id=delivery)
            return "unavailable", JSONResponse({"error": "ledger unavailable, retry later"}, status_code=503,
                                               headers={"Retry-After": "5"})
        case FailureNoted(call_cid=call_cid, kind=kind):
            return "failure_noted", JSONResponse({"status": "failure_noted", "call_cid": call_cid, "kind": kind})
        case Expired():
            log.warning("webhook_expired", file_id=result.file_id, call_cid=result.call_cid,
                        expires_at=result.expires_at.isoformat(), webhook_id=delivery,
                        note="the file ended longer than retention ago: a replayed delivery; nothing recorded")
            return "expired", JSONResponse({"status": "expired", "file_id": result.file_id})
        case Recorded():
            log.info("webhook_recorded", file_id=result.file_id, new_file=result.new_file,
                     transfer_ids=result.transfer_ids, webhook_id=delivery)
            outcome = "accepted" if result.new_file else "known"
            return outcome, JSONResponse({"status": outcome, "file_id": result.file_id,
                                          "transfers": result.transfer_ids},
                                         status_code=202 if result.new_file else 200)
    return "ignored", JSONResponse({"status": "ignored", "type": result})


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


class WebhookHandler:
    """The webhook route (`receive`): one thread hop to authenticate, record and log a delivery;
    the queuing and the outcome's counter go to `after`."""

    def __init__(self, settings: Settings, ledger: Ledger, enqueue: Enqueue, after: AfterAnswer) -> None:
        self.settings, self.ledger, self.enqueue, self.after = settings, ledger, enqueue, after
        self.stats = Stats(ledger.redis, ledger.prefix)  # the app's one: what Redis refused is added to its next write

    def count(self, outcome: str) -> None:
        """Count one webhook answer under `outcome`, after the answer."""
        self.after.later(self.stats.webhook, outcome)

    async def receive(self, request: Request) -> JSONResponse:  # no docstring: OpenAPI would publish it
        try:
            body = await request.body()
        except ClientDisconnect as gone:
            outcome, answer = respond(gone, None)
        else:
            outcome, answer = await run_in_threadpool(
                self.handle, body, {k.lower(): v for k, v in request.headers.items()})
        self.count(outcome)
        setattr(request.state, _OUTCOME, outcome)
        return answer

    def handle(self, body: bytes, headers: dict[str, str]) -> tuple[str, JSONResponse]:
        """Everything a delivery needs off the event loop; returns the outcome's name and the answer."""
        delivery = headers.get("x-webhook-id", "")[:100] or None  # unauthenticated: bounded in the log
        result: Result | Failure
        try:
            result = accept_delivery(self.settings, self.ledger, body, headers)
        except (InvalidWebhook, redis.RedisError) as exc:
            result = exc
        if isinstance(result, Recorded | FailureNoted) and result.to_queue:
            self.after.later(enqueue_quietly, self.enqueue, result.to_queue)
        if isinstance(result, Recorded) and result.new_file and result.kind is not None:
            self.after.later(self.stats.file_received, result.kind)
        return respond(result, delivery)


class WebhookOutcomes:
    """ASGI middleware: counts the webhook answers the handler did not: a 413 `BodyLimit` gave before
    the handler ran is ``too_large``, a 400 it gave ``malformed``."""

    def __init__(self, app: ASGIApp, count: Callable[[str], None]) -> None:
        self.app, self.count = app, count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != paths.WEBHOOK or scope["method"] != "POST":
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
            if not counted and (outcome := _REFUSED.get(status)):
                self.count(outcome)
