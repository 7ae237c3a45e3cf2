"""What operators read: GET /healthz and /readyz, /metrics, the status page (GET /) and its /static/*.

/metrics reads the whole cluster's figures from Redis (`worker.monitoring.metrics`), behind
ARCHIVER_METRICS_TOKEN when it is set; the status page and its files exist only with
ARCHIVER_STATUS_TOKEN set (`worker.edge.web.status_page`); `worker.edge.web.auth` checks both tokens.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Annotated

import redis
from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from config import Settings
from config.celery import TRANSFER_QUEUE
from config.logging import scrub
from worker.edge.web import auth, call_page, find_page, openapi, paths, status_page
from worker.ledger.connection import connect
from worker.ledger.store import Ledger
from worker.monitoring.metrics import ArchiverCollector, registry_for
from worker.monitoring.metrics import render as render_metrics

_NOT_FOUND = {"detail": "Not Found"}  # FastAPI's own 404 body, for the pages that are off
_STATIC_HEADERS = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}


def add_health(app: FastAPI, ledger: Ledger) -> None:
    """GET /healthz (the process answers) and GET /readyz (Redis answers too)."""

    @app.get(paths.HEALTHZ)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(paths.READYZ, responses=openapi.READYZ)
    def readyz() -> JSONResponse:
        try:
            ledger.redis.ping()
        except redis.RedisError as exc:
            return JSONResponse({"status": "unavailable", "redis": scrub(str(exc))}, status_code=503)
        return JSONResponse({"status": "ready"})


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


def add_metrics(app: FastAPI, settings: Settings, ledger: Ledger) -> None:
    """GET /metrics, always there; its broker connection is the ledger's when they share a Redis."""
    broker = ledger.redis if settings.broker_url == settings.env.redis_url else connect(
        settings.broker_url, fail_fast=True, name="archiver-metrics")
    configured = tuple(storage.name for storage in settings.archive.effective_storages())
    registry = registry_for(ArchiverCollector(ledger.redis, broker, TRANSFER_QUEUE, settings.archive.retention,
                                              ledger.prefix, configured))
    scrape = CachedScrape(lambda: render_metrics(registry), settings.archive.metrics_cache.total_seconds())
    secret = settings.env.archiver_metrics_token
    token = secret.get_secret_value() if secret is not None else ""

    @app.get(paths.METRICS, response_class=Response, responses=openapi.METRICS)
    def metrics(request: Request) -> Response:
        if token and (refusal := auth.metrics_refusal(request.headers.get("authorization"), token)):
            return Response(refusal + "\n", status_code=401, media_type="text/plain",
                            headers=auth.METRICS_CHALLENGE)
        try:
            body = scrape.get()
        except redis.RedisError as exc:
            return Response(f"ledger unavailable: {scrub(str(exc))}\n", status_code=503, media_type="text/plain")
        return Response(body, media_type=CONTENT_TYPE_LATEST)


def add_status_page(app: FastAPI, settings: Settings, ledger: Ledger) -> None:
    """GET / and GET /static/{name}: 404 unless ARCHIVER_STATUS_TOKEN is set."""
    secret = settings.env.archiver_status_token
    token = secret.get_secret_value() if secret is not None else ""

    @app.get(paths.STATUS, response_class=HTMLResponse, responses=openapi.STATUS_PAGE)
    def status(request: Request, call: Annotated[str, Query(
            description="a call to show: its cid (type:id) or its id alone")] = "",
               find: Annotated[str, Query(description="archived files to list: a call's cid or id, or "
                                                      "KEY=VALUE of the calls' custom data")] = "") -> Response:
        if not token:
            return JSONResponse(_NOT_FOUND, status_code=404)
        header = request.headers.get("authorization")
        if not auth.authorized(header, token):
            return JSONResponse({"error": auth.status_refusal(header)}, status_code=401, headers=auth.STATUS_CHALLENGE)
        query = call.strip()
        try:
            shown = call_page.render_call(call_page.read_call_view(ledger, query)) if query else ""
            searches = f"{find_page.section(ledger, find)}\n{call_page.search_form(query)}{shown}"
            page = status_page.render(status_page.read_status(ledger.redis, settings.archive.at_risk_margin,
                                                              ledger.prefix), searches)
        except redis.RedisError as exc:
            return JSONResponse({"error": f"ledger unavailable: {scrub(str(exc))}"}, status_code=503)
        return HTMLResponse(page, headers=status_page.HEADERS)

    @app.get(paths.STATIC + "/{name}", include_in_schema=False)  # the status page's script and styles
    def static(name: str) -> Response:
        found = status_page.static_file(name) if token else None
        if found is None:
            return JSONResponse(_NOT_FOUND, status_code=404)
        content, media_type = found
        return Response(content, media_type=media_type, headers=_STATIC_HEADERS)
