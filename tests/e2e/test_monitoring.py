"""Monitoring end to end: real processes, real transfers, then the logs, /metrics and the status page
in headless Chromium (chromedriver; `scripts/test` installs both with apt)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import API_SECRET
from tests.e2e.conftest import Archiver, local_storage, s3_storage
from tests.fakestream.server import FakeStream
from tests.support.moto import SECRET_KEY
from tests.support.processes import wait_until
from worker.edge.web import paths

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024
TOKEN = "e2e-status-token-5f1d0c"
CONTEXT = ("call_cid", "transfer_id", "storage")
RESULTS = Path(__file__).resolve().parents[2] / "test-results"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_every_log_line_of_a_transfer_carries_its_context_and_no_secret(
    archiver: Callable[..., Archiver], fake: FakeStream, moto_server: str, bucket: str
) -> None:
    """A multipart S3 upload (part threads) of a file whose URL expired (refresh path), with the
    lease heartbeat running: every line from start to archived names the call, transfer and storage."""
    service = archiver([s3_storage(moto_server, bucket)], transfer_lease="3s")
    url = service.start_web()
    recording = fake.add_recording("default:logged", os.urandom(11 * MiB + 5))
    short_lived = fake.signed_url(recording, timedelta(seconds=1))
    assert fake.deliver(url, recording, url=short_lived).status_code == 202
    wait_until(lambda: httpx.head(short_lived).status_code == 403, timeout=10, message="the URL to expire")

    service.start_worker(concurrency=1)
    (entry,) = service.wait_for_states(1)
    lines = json_lines((service.log_dir / "worker.log").read_text())
    events = [line["event"] for line in lines]
    during = lines[events.index("transfer_started"):events.index("recording_archived") + 1]
    assert "download_url_refreshed" in [line["event"] for line in during]
    for line in during:
        assert {k: line.get(k) for k in CONTEXT} == {
            "call_cid": "default:logged", "transfer_id": entry["id"], "storage": "s3"}, line
    logs = service.logs()
    query = short_lived.split("?", 1)[1]
    for secret in (API_SECRET, SECRET_KEY, query, "Signature=", "Expires=", "sig="):
        assert secret not in logs, f"{secret!r} leaked into a log line"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def chromium() -> Iterator[Any]:
    """Headless Chromium driven by chromedriver, with a fresh profile and no network of its own."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip("chromium and chromium-driver are not installed (scripts/test installs them)")
    from selenium import webdriver  # noqa: PLC0415 - only this test needs it
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    profile = tempfile.mkdtemp(prefix="archiver-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1200,1400"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_metrics_and_the_status_page_show_real_transfers(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path, chromium: Any
) -> None:
    root = tmp_path / "archive"
    service = archiver([local_storage(root)])
    service.env["ARCHIVER_STATUS_TOKEN"] = TOKEN
    started = time.time()
    url = service.start_all()
    files = [fake.add_recording("default:metrics", os.urandom(2 * MiB + 3)),
             fake.add_transcription("default:metrics", b'{"text":"hi"}\n' * 300)]
    for file in files:
        assert fake.deliver(url, file).status_code == 202
    service.wait_for_states(2)

    def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        response = service.get(paths.METRICS)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
        return samples(response.text)

    wait_until(lambda: scraped().get(("archiver_storage_up", (("storage", "disk"),))) == 1, timeout=30,
               message="the storage's health in /metrics")
    figures = scraped()
    disk = (("storage", "disk"),)
    assert figures[("archiver_archived_bytes_total", disk)] == sum(f.size for f in files)
    assert figures[("archiver_transfers", (("state", "archived"), ("storage", "disk")))] == 2
    assert figures[("archiver_transfer_duration_seconds_count", disk)] == 2
    assert figures[("archiver_webhook_requests_total", (("outcome", "accepted"),))] == 2
    assert figures[("archiver_last_webhook_timestamp_seconds", ())] >= started
    assert figures[("archiver_due_transfers", ())] == 0
    assert ("archiver_unarchived_deadline_seconds", ()) not in figures  # nothing left to archive
    assert service.get(paths.STATUS).status_code == 401

    chromium.execute_cdp_cmd("Network.enable", {})
    chromium.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Bearer {TOKEN}"}})
    chromium.get(f"http://127.0.0.1:{service.web_port}/")
    wait_until(lambda: chromium.execute_script(
        "const c = document.getElementById('chart');"
        "return !!c && c.dataset.rendered === 'true' && !!c.querySelector('canvas');"), timeout=15,
        message="the chart drawn")
    assert "archiver status" in chromium.title
    width = chromium.execute_script("return document.querySelector('#chart canvas').width")
    assert width >= 320
    RESULTS.mkdir(exist_ok=True)
    assert chromium.save_screenshot(str(RESULTS / "status-page.png"))
    errors = [e for e in chromium.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors  # no script error, no CSP violation, no missing file

    search = chromium.find_element("id", "call")  # the call's search form: its id alone finds it
    search.send_keys("metrics")
    chromium.find_element("css selector", "#call-search button").click()
    wait_until(lambda: chromium.execute_script("return !!document.getElementById('call-view');"), timeout=15,
               message="the call's section")
    assert chromium.current_url.endswith("/?call=metrics")
    rows = chromium.execute_script(
        "return [...document.querySelectorAll('#call-view section.session tbody tr')]"
        ".map(tr => [...tr.cells].map(td => td.textContent));")
    assert sorted((r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows) == sorted(
        (f.kind, f.filename, "disk", "archived", f"{f.size:,}", f.sha256) for f in files)
    assert chromium.execute_script("return document.getElementById('call').value") == "metrics"
    assert chromium.save_screenshot(str(RESULTS / "status-page-call.png"))
    errors = [e for e in chromium.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors  # the form submitted under the page's CSP (form-action 'self')

    search = chromium.find_element("id", "find")  # the search of archived files: by call id (or key=value)
    search.send_keys("metrics")
    chromium.find_element("css selector", "#find-search button").click()
    wait_until(lambda: chromium.execute_script("return !!document.getElementById('find-results');"), timeout=15,
               message="the search's results")
    assert chromium.current_url.endswith("/?find=metrics")
    found = chromium.execute_script(
        "return [...document.querySelectorAll('#find-results tbody tr')]"
        ".map(tr => [...tr.cells].map(td => td.textContent));")
    assert sorted((r[0], r[1], r[2], r[3], r[5]) for r in found) == sorted(
        ("default:metrics", f.kind, f.filename, "disk", f"{f.size:,}") for f in files)
    errors = [e for e in chromium.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
