"""The status page's search of archived files (GET /?find=…): by call or custom value, from the index."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.unit.conftest import Receiver
from tests.unit.ledger.test_search import add
from worker.edge.web import find_page, paths
from worker.ledger.store import Ledger

TOKEN = "status-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HOSTILE = "<script>alert('x')</script>&\"</td>"
T0 = datetime(2026, 5, 10, 9, 0, tzinfo=UTC)


@pytest.fixture
def receiver(make_receiver: Callable[..., Receiver]) -> Receiver:
    return make_receiver(env={"ARCHIVER_STATUS_TOKEN": TOKEN})


def page(receiver: Receiver, **params: str) -> str:
    response = httpx.get(f"{receiver.base}{paths.STATUS}", params=params, headers=AUTH)
    assert response.status_code == 200
    assert "script-src 'self';" in response.headers["Content-Security-Policy"]
    return response.text


def results(receiver: Receiver, search: str) -> list[str]:
    """The result rows' cells, as the page writes them."""
    section = page(receiver, find=search).split('<section id="find-results">')[1].split("</section>")[0]
    return [row.split("</tr>")[0] for row in section.split("<tbody>")[1].split("<tr>")[1:]] \
        if "<tbody>" in section else [section]


def test_the_page_has_the_find_form_and_no_results_without_a_search(receiver: Receiver) -> None:
    text = page(receiver)
    assert '<form id="find-search" method="get" action="/">' in text and 'name="find" value=""' in text
    assert 'id="find-results"' not in text


def test_a_custom_value_lists_the_archived_files_of_its_calls_newest_first(receiver: Receiver,
                                                                          ledger: Ledger) -> None:
    add(ledger, "default:acme-1", "old", T0, custom=["tenant=acme"], storages=("disk", "s3"))
    add(ledger, "default:acme-2", "new", T0 + timedelta(days=1), custom=["tenant=acme"])
    add(ledger, "default:other", "other", T0, custom=["tenant=globex"])
    add(ledger, "default:acme-2", "queued", T0 + timedelta(days=2), custom=["tenant=acme"], archived=False)
    rows = results(receiver, "tenant=acme")
    assert [row.split("</td>")[2] for row in rows] == ["<td>new.mp4", "<td>old.mp4", "<td>old.mp4"]
    assert rows[0].startswith("<td>default:acme-2</td><td>recording</td><td>new.mp4</td><td>disk</td>"
                              "<td><code>default:acme-2/new</code></td><td>100</td><td>")
    assert "<td>s3</td>" in rows[2]
    assert [row.split("</td>")[2] for row in results(receiver, "acme-1")] == ["<td>old.mp4"] * 2  # a call id


def test_hostile_values_are_escaped_and_an_empty_result_says_so(receiver: Receiver, ledger: Ledger) -> None:
    add(ledger, "default:x", HOSTILE, T0, custom=[f"note={HOSTILE}"])
    text = page(receiver, find=f"note={HOSTILE}")
    assert HOSTILE not in text and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;&quot;" in text
    assert 'value="note=&lt;script&gt;' in text
    (empty,) = results(receiver, "tenant=nobody")
    assert '<p class="empty">no archived file of tenant=nobody</p>' in empty


def test_more_files_than_the_page_shows_are_said(receiver: Receiver, ledger: Ledger) -> None:
    for n in range(find_page.LIMIT + 1):
        add(ledger, f"default:c{n}", f"f{n}", T0 + timedelta(minutes=n), custom=["tenant=big"])
    text = page(receiver, find="tenant=big")
    assert text.count("<td>recording</td>") == find_page.LIMIT and "f0.mp4" not in text
    assert f"only the {find_page.LIMIT} newest are shown" in text


def test_each_archived_file_found_has_a_download_button(receiver: Receiver, ledger: Ledger) -> None:
    """Part 4 of issue 16: every archived file the search lists can be fetched with a fresh link."""
    add(ledger, "default:acme-1", "old", T0, custom=["tenant=acme"], storages=("disk", "s3"))
    rows = results(receiver, "tenant=acme")
    tids = sorted(t for t in ledger.redis.zrange(ledger.keys.transfers, 0, -1))
    buttons = sorted(row.split(f'action="{paths.LINKS}/')[1].split('"')[0] for row in rows)
    assert len(rows) == 2 and buttons == tids
