"""The receiver's paths (worker/edge/web/paths.py) and the one map from a delivery's fate to its outcome
and answer (`respond`, worker/edge/web/webhook.py), without a server."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from starlette.requests import ClientDisconnect
from starlette.routing import Route

from config import load_settings
from tests.conftest import API_KEY, API_SECRET
from worker.edge.web import paths
from worker.edge.web.app import create_app
from worker.edge.web.webhook import Failure, Result, respond
from worker.errors import BadCredentials, InvalidWebhook, MalformedPayload, PayloadTooLarge
from worker.intake.record import Expired, FailureNoted, Recorded
from worker.ledger.connection import connect
from worker.ledger.store import Ledger


def test_the_paths_operators_rely_on_stay_as_they_are() -> None:
    """Stream's webhook URL, the health checks, Prometheus' scrape and the status page are configured
    outside this repository: the constants the tests build URLs from are pinned here, once."""
    assert (paths.WEBHOOK, paths.HEALTHZ, paths.READYZ, paths.METRICS, paths.STATUS, paths.STATIC) == (
        "/webhooks/stream", "/healthz", "/readyz", "/metrics", "/", "/static")


def test_the_app_routes_exactly_those_paths() -> None:
    settings = load_settings({"STREAM_API_KEY": API_KEY, "STREAM_API_SECRET": API_SECRET})
    app = create_app(settings, Ledger(connect("redis://127.0.0.1:1/0")), lambda ids: None)
    routes = [route for route in app.routes if isinstance(route, Route)]
    routed = {(route.path, method) for route in routes for method in route.methods or ()}
    assert routed == {(paths.WEBHOOK, "POST"), (paths.HEALTHZ, "GET"), (paths.READYZ, "GET"), (paths.METRICS, "GET"),
                      (paths.STATUS, "GET"), (paths.STATIC + "/{name}", "GET"), (paths.FILES + "/{token}", "GET"),
                      (paths.FILES + "/{token}", "HEAD"), (paths.LINKS + "/{transfer_id}", "POST")}


EXPIRES = datetime(2025, 1, 2, tzinfo=UTC)
CASES: list[tuple[Result | Failure, str, int, dict[str, Any]]] = [
    (Recorded("f1", True, ["t1"]), "accepted", 202, {"status": "accepted", "file_id": "f1", "transfers": ["t1"]}),
    (Recorded("f1", False, ["t1"]), "known", 200, {"status": "known", "file_id": "f1", "transfers": ["t1"]}),
    (FailureNoted("c1", "recording"), "failure_noted", 200,
     {"status": "failure_noted", "call_cid": "c1", "kind": "recording"}),
    (Expired("f1", "c1", EXPIRES), "expired", 200, {"status": "expired", "file_id": "f1"}),
    ("call.created", "ignored", 200, {"status": "ignored", "type": "call.created"}),
    (BadCredentials("wrong X-Api-Key"), "refused", 401, {"error": "wrong X-Api-Key"}),
    (MalformedPayload("no call_cid"), "malformed", 400, {"error": "no call_cid"}),
    (InvalidWebhook("not JSON"), "malformed", 400, {"error": "not JSON"}),
    (PayloadTooLarge("body is over 1 bytes"), "too_large", 413, {"error": "body is over 1 bytes"}),
    (redis.ConnectionError("refused"), "unavailable", 503, {"error": "ledger unavailable, retry later"}),
    (ClientDisconnect(), "malformed", 400, {"error": "incomplete body"}),
]


@pytest.mark.parametrize(("result", "outcome", "status", "body"), CASES, ids=[c[1] + f"-{c[2]}" for c in CASES])
def test_each_fate_has_one_outcome_and_one_answer(result: Result | Failure, outcome: str, status: int,
                                                  body: dict[str, Any]) -> None:
    """The counter's label, the status and the JSON body come from one place."""
    named, answer = respond(result, "wh-1")
    assert (named, answer.status_code, json.loads(bytes(answer.body))) == (outcome, status, body)


def test_the_ledger_down_asks_the_sender_to_retry() -> None:
    _, answer = respond(redis.ConnectionError("refused"), None)
    assert answer.headers["Retry-After"] == "5"
