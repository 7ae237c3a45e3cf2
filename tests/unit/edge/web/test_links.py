"""POST /links/<transfer id> (the status page's download button) and GET /files/<token>, served over real
HTTP by the receiver on a real ledger and a real directory (the whole `archiver web`: tests/e2e/test_links.py)."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.ledger_states import add
from tests.unit.conftest import Receiver
from worker.edge.web import paths
from worker.ledger.store import Ledger
from worker.storage.local import LocalStorage

TOKEN = "status-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PUBLIC = "https://archiver.example.com/behind-proxy"
DATA = bytes(range(256)) * 40


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "disk"


@pytest.fixture
def receiver(make_receiver: Callable[..., Receiver], root: Path) -> Receiver:
    disk = {"name": "disk", "storage_type": "local", "bucket": str(root)}
    return make_receiver(env={"ARCHIVER_STATUS_TOKEN": TOKEN}, storages=[disk], default_storage="disk",
                         public_url=PUBLIC, max_link_ttl="10m")


def archived(ledger: Ledger, root: Path, name: str = "c1") -> str:
    (tid,) = add(ledger, name, "archived")
    transfer = ledger.get(tid)
    assert transfer is not None
    with LocalStorage("disk", root).open_writer(transfer.key, content_type="video/mp4", metadata={}) as writer:
        writer.write(DATA)
        writer.commit()
    return tid


def post(receiver: Receiver, tid: str, **headers: str) -> httpx.Response:
    return httpx.post(f"{receiver.base}{paths.LINKS}/{tid}", headers=headers, timeout=10)


def served(receiver: Receiver, location: str, **headers: str) -> httpx.Response:
    """GET the link `location` names (under public_url) from the receiver itself."""
    assert location.startswith(f"{PUBLIC}{paths.FILES}/")
    return httpx.get(f"{receiver.base}{paths.FILES}/{location.rsplit('/', 1)[1]}", headers=headers, timeout=10)


def test_a_fresh_link_is_a_303_whose_location_downloads_the_file(receiver: Receiver, ledger: Ledger,
                                                                 root: Path) -> None:
    """With the status token: 303 to a link under public_url, never cached; the link gives the bytes, a
    Range, HEAD, and says it is an attachment named after the file."""
    answer = post(receiver, archived(ledger, root), **AUTH)
    assert answer.status_code == 303 and answer.headers["cache-control"] == "no-store"
    location = answer.headers["location"]
    whole = served(receiver, location)
    assert whole.status_code == 200 and whole.content == DATA
    assert whole.headers["content-type"] == "video/mp4" and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-disposition"] == 'attachment; filename="rec_c1.mp4"'
    assert whole.headers["cache-control"] == "no-store" and "sandbox" in whole.headers["content-security-policy"]
    ranged = served(receiver, location, Range="bytes=100-355")
    assert ranged.status_code == 206 and ranged.content == DATA[100:356]
    assert ranged.headers["content-range"] == f"bytes 100-355/{len(DATA)}"
    assert served(receiver, location, Range="bytes=-10").content == DATA[-10:]
    past = served(receiver, location, Range=f"bytes={len(DATA)}-")
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(DATA)}"
    head = httpx.head(f"{receiver.base}{paths.FILES}/{location.rsplit('/', 1)[1]}", timeout=10)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(DATA)) and head.content == b""


def test_a_browsers_form_gets_a_page_that_opens_the_link(receiver: Receiver, ledger: Ledger, root: Path) -> None:
    """A form's answer may not redirect to another origin under the status page's form-action 'self'
    (Chromium refuses it): a browser (Accept: text/html) gets a page opening the link by meta refresh."""
    answer = post(receiver, archived(ledger, root), Accept="text/html,*/*;q=0.8", **AUTH)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert answer.headers["referrer-policy"] == "no-referrer" and answer.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    url = html.unescape(answer.text.split('content="0; url=')[1].split('"')[0])
    assert served(receiver, url).content == DATA and "rec_c1.mp4" in answer.text


def test_without_the_status_token_no_link_is_made(receiver: Receiver, ledger: Ledger, root: Path) -> None:
    """No token, a wrong one: 401 with the challenge, like the status page; no link key made."""
    tid = archived(ledger, root)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dXNlcjp3cm9uZw=="}):
        answer = post(receiver, tid, **headers)
        assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Basic")
        assert "location" not in answer.headers
    assert ledger.redis.get(ledger.keys.link_key) is None


def test_another_sites_form_is_refused(receiver: Receiver, ledger: Ledger, root: Path) -> None:
    """A browser resends basic-auth credentials whoever's page posts: a request it marks cross-site (or, without
    Sec-Fetch-Site, from another Origin) gets 403; the page's own form (same-origin) gets its link."""
    tid = archived(ledger, root)
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                    {"Origin": "https://evil.example"}):
        assert post(receiver, tid, **headers, **AUTH).status_code == 403, headers
    assert post(receiver, tid, **{"Sec-Fetch-Site": "same-origin"}, **AUTH).status_code == 303
    assert post(receiver, tid, Origin=receiver.base, **AUTH).status_code == 303
    assert post(receiver, tid, Origin="https://archiver.example.com", **AUTH).status_code == 303  # public_url's


def test_no_link_for_an_unknown_or_unarchived_transfer(receiver: Receiver, ledger: Ledger) -> None:
    assert post(receiver, "t_nope", **AUTH).status_code == 404
    (failed,) = add(ledger, "c9", "failed")
    answer = post(receiver, failed, **AUTH)
    assert answer.status_code == 409 and "is failed, not archived" in answer.json()["error"]


def test_the_links_route_is_off_with_the_status_page(make_receiver: Callable[..., Receiver], ledger: Ledger) -> None:
    """Without ARCHIVER_STATUS_TOKEN there is no status page, and no button's route either."""
    (tid,) = add(ledger, "c1", "archived")
    assert post(make_receiver(), tid, **AUTH).status_code == 404


def test_an_archived_file_on_the_call_page_has_a_download_button(receiver: Receiver, ledger: Ledger,
                                                                 root: Path) -> None:
    """Archived rows: a POST form to /links/<tid>; a failed transfer's row: none."""
    tid = archived(ledger, root)
    (failed,) = add(ledger, "c2", "failed")

    def page(call: str) -> str:
        return httpx.get(f"{receiver.base}{paths.STATUS}", params={"call": call}, headers=AUTH, timeout=10).text

    assert (f'<form class="download" method="post" action="{paths.LINKS}/{tid}"><button type="submit">download'
            "</button></form>") in page("default:c1")
    other = page("default:c2")
    assert "<td>failed</td>" in other and "<th>link</th>" in other
    assert f"{paths.LINKS}/" not in other and f"{paths.LINKS}/{failed}" not in other
