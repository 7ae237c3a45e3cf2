"""The status page's call (GET /?call=…): sessions, files at every destination, manifests, notifications."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from tests.support.ledger_states import add
from tests.unit.conftest import Receiver
from worker.edge.web import call_page, paths
from worker.ledger.calls import Manifest
from worker.ledger.store import Ledger
from worker.notify.outbox import Outbox, event_id

TOKEN = "status-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HOSTILE = "<script>alert('x')</script>&\"</td></table>"
ROUTES = json.dumps({"retry_ms": 60_000, "endpoints": [
    {"id": "e1", "events": ["file.archived", "file.failed", "stream.failure"]}]})


@pytest.fixture
def receiver(make_receiver: Callable[..., Receiver]) -> Receiver:
    return make_receiver(env={"ARCHIVER_STATUS_TOKEN": TOKEN})


def call_section(receiver: Receiver, query: str) -> str:
    response = httpx.get(f"{receiver.base}{paths.STATUS}", params={"call": query}, headers=AUTH)
    assert response.status_code == 200
    assert "form-action 'self'" in response.headers["Content-Security-Policy"]
    return response.text.split('<section id="call-view">')[1].split("</section>\n<h2>")[0]


def test_the_page_has_a_search_form_and_no_call_section_without_a_search(receiver: Receiver) -> None:
    page = httpx.get(f"{receiver.base}{paths.STATUS}", headers=AUTH).text
    assert '<form id="call-search" method="get" action="/">' in page and 'name="call" value=""' in page
    assert 'id="call-view"' not in page


def test_a_call_shows_its_sessions_and_each_file_at_every_destination(receiver: Receiver, ledger: Ledger) -> None:
    (disk, s3) = add(ledger, "c1", "archived", storages=("disk", "s3"))
    add(ledger, "c2", "failed")
    section = call_section(receiver, "default:c1")
    assert '<section class="session" data-call="default:c1" data-session="s-c1">' in section
    assert section.count("<td>rec_c1.mp4</td>") == 2 and "rec_c2.mp4" not in section
    assert "<td>disk</td><td>archived</td><td>1,234</td><td><code>" + "ab" * 32 in section
    assert "<td>default/c1/rec_c1.mp4</td>" in section and "<td>s3</td>" in section
    assert "Manifest: <span class=\"empty\">none recorded</span>" in section
    assert "SIGNED-URL-SECRET" not in section  # a file's signed URL is never shown
    failed = call_section(receiver, "c2")  # an id alone finds the call
    assert "<td>failed</td>" in failed and '<span class="error">refused</span>' in failed
    assert "1 file(s) of default:c2" in failed


def test_a_sessions_manifests_as_the_ledger_records_them(receiver: Receiver, ledger: Ledger,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Where manifests are read is one function (`worker.ledger.calls.manifests_of`): what it finds is shown."""
    add(ledger, "c1", "archived")
    found = {("default:c1", "s-c1"): [Manifest("disk", "default/c1/manifest_s-c1.json", "cd" * 32)]}
    monkeypatch.setattr(call_page, "manifests_of", lambda _ledger, cid, sid: found.get((cid, sid), []))
    section = call_section(receiver, "default:c1")
    assert f"<li>disk: <code>default/c1/manifest_s-c1.json</code> sha256 <code>{'cd' * 32}</code></li>" in section


def test_an_unknown_call_says_so(receiver: Receiver) -> None:
    assert "no file of call default:nope in the ledger" in call_section(receiver, "default:nope")


def test_the_notifications_about_the_call_with_their_deliveries(receiver: Receiver, ledger: Ledger) -> None:
    announcing = Ledger(ledger.redis, ledger.prefix, outbox=ROUTES)
    (tid,) = add(announcing, "c1", "archived")
    add(announcing, "c2", "failed")
    assert announcing.note_failure({"kind": "recording", "call_cid": "default:c1", "egress_id": "eg1"})
    did = f"{event_id('file.archived', tid)}:e1"
    outbox = Outbox(ledger)
    outbox.finish(did, outbox.claim(did, 60_000).token, ok=False, status=503, error="endpoint down",
                  retry_in_ms=1000)
    section = call_section(receiver, "default:c1").split("<h3>Notifications about this call</h3>")[1]
    assert f"<td>file.archived</td><td>{event_id('file.archived', tid)}</td><td>{tid}</td><td>e1</td>" in section
    assert "<td>pending</td><td>1</td><td>503</td>" in section and "endpoint down" in section
    assert "<td>stream.failure</td>" in section and "failure:recording:default:c1:eg1" in section
    assert "file.failed" not in section  # c2's
    assert "<td>file.failed</td>" in call_section(receiver, "default:c2")
    add(ledger, "c3")
    assert "no notification about this call" in call_section(receiver, "default:c3")


def test_everything_about_the_call_and_the_search_itself_is_escaped(receiver: Receiver, ledger: Ledger) -> None:
    (tid,) = add(ledger, "c1", "failed")
    transfer = ledger.get(tid)
    assert transfer is not None
    ledger.redis.hset(f"archiver:transfer:{tid}", mapping={"error": HOSTILE, "key": HOSTILE, "storage": HOSTILE})
    ledger.redis.hset(f"archiver:file:{transfer.file_id}", mapping={"filename": HOSTILE, "session_id": HOSTILE})
    escaped = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;&quot;"
    for query in ("default:c1", f"default:c1{HOSTILE}"):
        page = httpx.get(f"{receiver.base}{paths.STATUS}", params={"call": query}, headers=AUTH).text
        assert "<script>alert" not in page and "</td></table>\"" not in page
        assert page.count("<script") == 3  # the chart's JSON and the two static scripts, nothing injected
        assert page.count(escaped) >= (5 if query == "default:c1" else 2)  # the search, echoed, escaped too
