"""GET /metrics, the status page (GET /) and its auth, and the webhook counters (worker/edge/web/monitoring.py,
worker/edge/web/status_page.py), over real HTTP with a real Redis ledger."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.ledger_states import add_waiting
from tests.support.processes import wait_until
from tests.support.samples import SAMPLES
from tests.unit.conftest import Receiver, serve
from tests.unit.edge.web.test_web import sample
from tests.unit.monitoring.test_metrics import add
from worker.clock import now_ms
from worker.discovery.reconcile_state import FailedCalls, completed
from worker.edge.web import paths
from worker.edge.web.auth import authorized
from worker.ledger.store import Ledger
from worker.monitoring.stats import Stats

TOKEN = "status-token-0123456789"
HOSTILE = "<script>alert('x')</script>&\"</td></table>"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def receiver(make_receiver: Callable[..., Receiver]) -> Receiver:
    return make_receiver(env={"ARCHIVER_STATUS_TOKEN": TOKEN})


def webhook_counts(receiver: Receiver) -> dict[str, float]:
    text = httpx.get(f"{receiver.base}{paths.METRICS}", timeout=10).text
    return {s.labels["outcome"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "archiver_webhook_requests_total"}


def test_without_a_token_the_status_page_and_its_files_do_not_exist(make_settings: Any, ledger: Ledger) -> None:
    server, _ = serve(make_settings(call_storage_key=""), ledger)
    with server as base:
        assert httpx.get(f"{base}{paths.STATUS}", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404
        assert httpx.get(f"{base}{paths.STATIC}/status.js").status_code == 404
        assert httpx.get(f"{base}{paths.METRICS}").status_code == 200  # metrics do not need the token


@pytest.mark.parametrize("header", [None, f"Bearer {TOKEN}x", "Bearer", f"bearer{TOKEN}", basic("admin", "nope"),
                                    basic(TOKEN, ""), f"Basic {TOKEN}", "Basic !!!", f"Digest {TOKEN}"])
def test_missing_or_wrong_credentials_get_401_with_a_basic_challenge(receiver: Receiver, header: str | None) -> None:
    response = httpx.get(f"{receiver.base}{paths.STATUS}", headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="archiver"'
    assert TOKEN not in response.text


@pytest.mark.parametrize(("header", "says"), [
    (None, "this page needs the status token: send ARCHIVER_STATUS_TOKEN as `Authorization: Bearer …` or as "
           "the basic-auth password"),
    ("Bearer", "this page needs the status token: send ARCHIVER_STATUS_TOKEN"),
    (f"Bearer {TOKEN}x", "wrong token: the token sent is not ARCHIVER_STATUS_TOKEN"),
    (basic("admin", "nope"), "wrong token: the token sent is not ARCHIVER_STATUS_TOKEN"),
])
def test_a_401_says_how_to_send_the_token_or_that_it_is_wrong(receiver: Receiver, header: str | None,
                                                              says: str) -> None:
    """Without a token the answer says how to send one; with a wrong one, that it is wrong; never
    that the server lacks the token (it has one: the page exists)."""
    response = httpx.get(f"{receiver.base}{paths.STATUS}", headers={"Authorization": header} if header else {})
    assert response.status_code == 401 and says in response.json()["error"]
    assert "needs ARCHIVER_STATUS_TOKEN" not in response.text


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}", f"bearer  {TOKEN}", basic("anyone", TOKEN), basic("", TOKEN)])
def test_the_token_as_bearer_or_as_any_users_basic_password_opens_the_page(receiver: Receiver, header: str) -> None:
    response = httpx.get(f"{receiver.base}{paths.STATUS}", headers={"Authorization": header})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert "<h1>archiver status</h1>" in response.text


def test_authorized_compares_the_whole_token() -> None:
    assert authorized(f"Bearer {TOKEN}", TOKEN)
    assert not authorized(f"Bearer {TOKEN[:-1]}", TOKEN) and not authorized(f"Bearer {TOKEN}", "")
    assert not authorized(basic("u", TOKEN + ":"), TOKEN) and authorized(basic("u:v", TOKEN), TOKEN) is False


def test_everything_from_the_ledger_is_escaped(receiver: Receiver, ledger: Ledger) -> None:
    tid = add(ledger, 1, "s3", "failed")
    ledger.redis.hset(f"archiver:transfer:{tid}", mapping={"error": HOSTILE, "reason": HOSTILE,
                                                          "call_cid": HOSTILE, "storage": HOSTILE})
    Stats(ledger.redis).storage_checked(HOSTILE, False, HOSTILE)
    page = httpx.get(f"{receiver.base}{paths.STATUS}", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert "<script>alert" not in page and "</td></table>" not in page.split("<h2>Failures</h2>")[1][:2000]
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;&quot;" in page
    assert page.count("<script") == 3  # the chart's JSON and the two static scripts, nothing injected


def test_the_page_shows_counts_failures_at_risk_files_health_and_the_days_figures(receiver: Receiver,
                                                                                   ledger: Ledger) -> None:
    add(ledger, 1, "s3", "archived")
    tid = add(ledger, 2, "disk", "failed")
    ledger.redis.hset(f"archiver:transfer:{tid}", mapping={"error": "bucket is gone", "reason": "missing_bucket"})
    add(ledger, 3, "disk")  # queued, its deadline 13 days away: not at risk
    add(ledger, 4, "disk", end=datetime.now(UTC) - timedelta(days=13, hours=-5))  # deleted in 29 hours
    Stats(ledger.redis).archived("s3", 123_456, 3.0)
    Stats(ledger.redis).storage_checked("s3", True, None)
    page = httpx.get(f"{receiver.base}{paths.STATUS}", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert "bucket is gone" in page and "missing_bucket" in page
    assert '<span class="ok">up</span>' in page
    at_risk = page.split("<h2>Files at risk</h2>")[1].split("<h2>")[0]
    assert "rec_default_m_4.mp4" in at_risk and "1d 4h 59m" in at_risk and "rec_default_m_3.mp4" not in at_risk
    chart = page.split('<script type="application/json" id="bytes-by-day">')[1].split("</script>")[0]
    figures = json.loads(chart)
    assert len(figures["days"]) == 30 and figures["bytes"][-1] == 123_456


def test_the_page_shows_when_each_reconciliation_last_completed(receiver: Receiver, ledger: Ledger) -> None:
    """Never, before any; then the full run's completion time and the calls the incremental one failed."""
    page = httpx.get(f"{receiver.base}{paths.STATUS}", headers={"Authorization": f"Bearer {TOKEN}"}).text
    section = page.split("<h2>Reconciliation with Stream</h2>")[1].split("<h2>")[0]
    assert section.count("never") == 2
    completed(ledger, "incremental", now_ms(), 2)
    FailedCalls(ledger, 86_400_000).add("default:broken", {"cid": "default:broken"}, "503")
    page = httpx.get(f"{receiver.base}{paths.STATUS}", headers={"Authorization": f"Bearer {TOKEN}"}).text
    section = page.split("<h2>Reconciliation with Stream</h2>")[1].split("<h2>")[0]
    assert section.count("never") == 1 and "<td>2</td>" in section and "1 call(s) wait to be listed again" in section


def test_the_page_shows_streams_api_requests_by_endpoint_and_outcome_and_the_time_waited(
        receiver: Receiver, ledger: Ledger) -> None:
    """None before any request; then per endpoint the outcomes counted and the seconds waited."""
    def section() -> str:
        page = httpx.get(f"{receiver.base}{paths.STATUS}", headers={"Authorization": f"Bearer {TOKEN}"}).text
        return page.split("<h2>Stream API requests")[1].split("<h2>")[0]

    assert "no Stream API request yet" in section()
    stats = Stats(ledger.redis)
    endpoint = "GET /api/v2/video/call/{type}/{id}"
    for outcome in ("ok", "ok", "rate_limited", "gone"):
        stats.stream_request(endpoint, outcome)
    stats.stream_waited(endpoint, 2.5)
    shown = section()
    assert f"<td>{endpoint}</td>" in shown and "gone 1, ok 2, rate_limited 1" in shown and "<td>2.5</td>" in shown


def test_the_page_shows_files_waiting_for_their_routes_with_the_reason(receiver: Receiver, ledger: Ledger) -> None:
    page = httpx.get(f"{receiver.base}{paths.STATUS}", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert "no file waiting for its routes" in page
    failing = add_waiting(ledger, "w1", created=now_ms() - 125_000)
    add_waiting(ledger, "w2")
    ledger.defer_routing(failing, 30_000, f"Stream API GET /call: ConnectError {HOSTILE}")
    page = httpx.get(f"{receiver.base}{paths.STATUS}", headers={"Authorization": f"Bearer {TOKEN}"}).text
    section = page.split("<h2>Waiting for routes</h2>")[1].split("<h2>")[0]
    assert "2 file(s) wait for Stream&#x27;s call data" in section and "1 whose call lookup failed" in section
    assert "the oldest has waited 2m 5s" in section or "the oldest has waited 2m 6s" in section
    assert "rec_w1.mp4" in section and "rec_w2.mp4" in section and "call_lookup_failed" in section
    assert "ConnectError &lt;script&gt;" in section and "<script>alert" not in page
    assert "waiting for Stream&#x27;s call data (GetCall)" in section  # the one not looked up yet says so


def test_static_files_are_served_by_name_only(receiver: Receiver) -> None:
    script = httpx.get(f"{receiver.base}{paths.STATIC}/uPlot.iife.min.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "uPlot" in script.text
    for name in ("../web.py", "..%2Fweb.py", "status.py", "nope.js"):
        assert httpx.get(f"{receiver.base}{paths.STATIC}/{name}").status_code == 404


def test_every_webhook_outcome_is_counted(receiver: Receiver) -> None:
    body = sample("call.recording_ready.json")
    assert receiver.post(body).status_code == 202
    assert receiver.post(body).status_code == 200
    assert receiver.post(body, secret="wrong").status_code == 401
    assert receiver.post(b"{oops").status_code == 400
    assert receiver.post(json.dumps({"type": "call.session_started", "call_cid": "a:b"}).encode()).status_code == 200
    big = json.dumps({"type": "call.session_started", "pad": "x" * (1024 * 1024)}).encode()
    assert receiver.post(big).status_code == 413
    failed = {"type": "call.recording_failed", "call_cid": "default:x", "egress_id": "e1", "error": "boom"}
    assert receiver.post(json.dumps(failed).encode()).status_code == 200
    assert receiver.post((SAMPLES / "call.transcription_ready.json").read_bytes()).json()["status"] == "expired"
    expected = {"accepted": 1, "known": 1, "refused": 1, "malformed": 1, "ignored": 1, "too_large": 1,
                "failure_noted": 1, "expired": 1}
    wait_until(lambda: webhook_counts(receiver) == expected, timeout=5, message="every outcome counted")


def test_a_webhook_the_ledger_cannot_take_is_counted_unavailable_once_redis_is_back(
        make_settings: Any, ledger: Ledger, redis_server: Any) -> None:
    server, _ = serve(make_settings(call_storage_key=""), ledger)
    with server as base:
        receiver = Receiver(base, [], ledger)
        redis_server.stop()
        try:
            assert receiver.post(sample("call.recording_ready.json")).status_code == 503
        finally:
            redis_server.start()
        assert receiver.post(sample("call.recording_ready.json")).status_code == 202
        wait_until(lambda: webhook_counts(receiver).get("unavailable") == 1, timeout=10,
                   message="the 503 counted after Redis came back")


def transfers_gauge(text: str) -> float:
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == "archiver_transfers")


@pytest.mark.parametrize(("cache", "fresh"), [(None, False), ("0s", True)])
def test_metrics_are_cached_per_process_for_metrics_cache(make_settings: Any, ledger: Ledger, cache: str | None,
                                                          fresh: bool) -> None:
    """Default 10 s: a second scrape within it reads nothing from Redis and shows the same figures."""
    settings = make_settings(call_storage_key="", **({"metrics_cache": cache} if cache else {}))
    assert settings.archive.metrics_cache == (timedelta(seconds=10) if cache is None else timedelta(0))
    server, _ = serve(settings, ledger)
    with server as base:
        first = httpx.get(f"{base}{paths.METRICS}", timeout=10).text
        add(ledger, "cached1", "archived")
        second = httpx.get(f"{base}{paths.METRICS}", timeout=10).text
    assert (transfers_gauge(second) > transfers_gauge(first)) == fresh
    assert (second == first) != fresh


METRICS_TOKEN = "metrics-token-0123456789"


@pytest.mark.parametrize(("header", "says"), [
    (None, "/metrics needs the metrics token: send ARCHIVER_METRICS_TOKEN as `Authorization: Bearer …`"),
    ("Bearer", "/metrics needs the metrics token"), (basic("x", METRICS_TOKEN), "/metrics needs the metrics token"),
    (f"Bearer {METRICS_TOKEN}x", "wrong token: the token sent is not ARCHIVER_METRICS_TOKEN"),
    (f"Bearer {TOKEN}", "wrong token: the token sent is not ARCHIVER_METRICS_TOKEN"),
])
def test_with_a_metrics_token_metrics_need_it_as_bearer(make_settings: Any, ledger: Ledger, header: str | None,
                                                         says: str) -> None:
    settings = make_settings(env={"ARCHIVER_METRICS_TOKEN": METRICS_TOKEN, "ARCHIVER_STATUS_TOKEN": TOKEN},
                             call_storage_key="")
    assert METRICS_TOKEN in settings.secrets()
    server, _ = serve(settings, ledger)
    with server as base:
        refused = httpx.get(f"{base}{paths.METRICS}", headers={"Authorization": header} if header else {}, timeout=10)
        allowed = httpx.get(f"{base}{paths.METRICS}", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10)
    assert refused.status_code == 401 and refused.text.startswith(says) and METRICS_TOKEN not in refused.text
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert allowed.status_code == 200 and "archiver_transfers" in allowed.text
