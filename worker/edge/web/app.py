"""The HTTP receiver: Stream's webhook, health and readiness; /metrics and the status page (GET /);
download links (/files/<token>, and the status page's POST /links/<transfer id>).

`create_app` assembles the parts: the webhook route (`worker.edge.web.webhook`), the operators'
routes (`worker.edge.web.monitoring`), the links' (`worker.edge.web.links`), their paths
(`worker.edge.web.paths`) and what the OpenAPI schema says of them (`worker.edge.web.openapi`).

Hostile input: a body over `MAX_BODY` (by Content-Length, or counted while a chunked body streams
in) is answered 413 by our own ASGI middleware (`worker.edge.web.body_limit`, whatever FastAPI's version)
before it is read whole, and counted by `WebhookOutcomes`, which wraps it. The OpenAPI schema
documents every answer but is not served (``app.openapi()`` builds it).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from config import Settings
from worker.edge.web import openapi, paths
from worker.edge.web.body_limit import BodyLimit
from worker.edge.web.links import add_files, add_links
from worker.edge.web.monitoring import add_health, add_metrics, add_status_page
from worker.edge.web.webhook import AfterAnswer, WebhookHandler, WebhookOutcomes
from worker.intake.webhook import MAX_BODY
from worker.ledger.models import Enqueue
from worker.ledger.store import Ledger
from worker.links import LinkMaker

__all__ = ["Enqueue", "create_app"]  # Enqueue: for the benches, which import it from here


def create_app(settings: Settings, ledger: Ledger, enqueue: Enqueue) -> FastAPI:
    """The ASGI app; `enqueue` hands transfer ids to the workers (best effort, after the answer)."""
    after = AfterAnswer()
    webhook = WebhookHandler(settings, ledger, enqueue, after)
    links = LinkMaker(settings.archive, ledger, paths.FILES)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Everything imported and built so far lives as long as the process: keep it out of the
        # garbage collector's full passes, which otherwise stall a request now and then (p99).
        gc.freeze()
        yield
        await run_in_threadpool(after.close)
        await run_in_threadpool(links.close)

    app = FastAPI(title="stream-archiver", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.add_middleware(BodyLimit, limit=MAX_BODY)  # inside WebhookOutcomes, which counts its 413s
    app.add_middleware(WebhookOutcomes, count=webhook.count)
    app.post(paths.WEBHOOK, openapi_extra=openapi.WEBHOOK, name="stream_webhook")(webhook.receive)
    add_health(app, ledger)
    add_metrics(app, settings, ledger)
    add_status_page(app, settings, ledger)
    add_files(app, links)
    add_links(app, settings, ledger, links)
    return app
