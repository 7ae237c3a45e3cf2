"""`archiver link` and the links `archiver web` serves, as real processes: the CLI prints the URL alone on
stdout; the receiver serves a local file behind it (Range, HEAD) and nothing else (forged, expired and
traversing tokens refused); an S3 link is the store's own; the status page's download button gets a
fresh link. Real redis-server, moto_server, `archiver web`, `archiver link`."""

from __future__ import annotations

import http.client
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from mypy_boto3_s3 import S3Client

from tests.e2e.conftest import Archiver, local_storage, s3_storage
from tests.e2e.test_monitoring import chromium  # noqa: F401 - a fixture, used by name
from tests.support.ledger_states import add
from tests.support.ports import free_port
from tests.support.processes import wait_until
from worker.clock import now_ms
from worker.edge.web import paths
from worker.edge.web.links import NOT_VALID
from worker.ledger.store import Ledger
from worker.links.served import FileToken, read_token, sign_token, signing_key
from worker.storage.local import LocalStorage

pytestmark = pytest.mark.e2e
TOKEN = "e2e-status-token-links-8c1"
DATA = os.urandom(2 * 1024 * 1024 + 123)


@pytest.fixture
def ledger(redis_url: str) -> Ledger:
    return Ledger(redis.Redis.from_url(redis_url, decode_responses=True))


def start(archiver: Callable[..., Archiver], storages: list[dict[str, Any]], **top: Any) -> Archiver:
    """`archiver web` on a port chosen first, so that public_url (unless `top` says otherwise) is its address."""
    port = free_port()
    service = archiver(storages, **({"public_url": f"http://127.0.0.1:{port}"} | top))
    service.env["ARCHIVER_STATUS_TOKEN"] = TOKEN
    service.web_port = port
    service.start_web()
    return service


def archived_on_disk(ledger: Ledger, root: Path, name: str, data: bytes = DATA) -> str:
    """An archived transfer to storage "disk" with its object at root/key; its id."""
    (tid,) = add(ledger, name, "archived")
    transfer = ledger.get(tid)
    assert transfer is not None
    with LocalStorage("disk", root).open_writer(transfer.key, content_type="video/mp4", metadata={}) as writer:
        writer.write(data)
        writer.commit()
    return tid


def raw_get(port: int, target: str) -> tuple[int, bytes]:
    """GET `target` exactly as written (no client normalises its dots or escapes)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.putrequest("GET", target, skip_accept_encoding=True)
    connection.endheaders()
    response = connection.getresponse()
    answer = response.status, response.read()
    connection.close()
    return answer


def test_archiver_link_gives_a_local_file_that_archiver_web_serves(
        archiver: Callable[..., Archiver], tmp_path: Path, ledger: Ledger) -> None:
    """The URL is the only line on stdout, under public_url; the running receiver serves the exact bytes, a
    Range (206, exact slice), HEAD, 416 past the end; no log line holds the token."""
    root = tmp_path / "disk"
    service = start(archiver, [local_storage(root)])
    tid = archived_on_disk(ledger, root, "c1")
    result = service.cli("link", tid, "--ttl", "10m")
    assert result.returncode == 0, result.stderr
    (url,) = result.stdout.splitlines()
    assert url.startswith(f"http://127.0.0.1:{service.web_port}{paths.FILES}/")
    assert "expires at" in result.stderr and "default/c1/rec_c1.mp4" in result.stderr
    whole = httpx.get(url, timeout=30)
    assert whole.status_code == 200 and whole.content == DATA
    assert whole.headers["content-disposition"] == 'attachment; filename="rec_c1.mp4"'
    ranged = httpx.get(url, headers={"Range": "bytes=1048576-1048675"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == DATA[1048576:1048676]
    assert ranged.headers["content-range"] == f"bytes 1048576-1048675/{len(DATA)}"
    assert httpx.get(url, headers={"Range": f"bytes={len(DATA)}-"}, timeout=30).status_code == 416
    head = httpx.head(url, timeout=30)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(DATA))
    assert url.rsplit("/", 1)[1] not in service.logs() + result.stderr


def test_forged_expired_and_traversing_requests_get_nothing(
        archiver: Callable[..., Archiver], tmp_path: Path, ledger: Ledger) -> None:
    """A flipped character, another key, an expired link, garbage: the same 403 and words. Paths that climb
    out of /files/, and tokens validly signed (with the ledger's key, read from Redis) for keys outside the
    storage's directory or for another storage: never a byte of anything else."""
    root = tmp_path / "disk"
    (tmp_path / "outside.txt").write_text("OUTSIDE-SECRET")
    service = start(archiver, [local_storage(root)])
    port = service.web_port
    assert port is not None
    tid = archived_on_disk(ledger, root, "c1", b"inside")
    (url,) = service.cli("link", tid).stdout.splitlines()
    token = url.rsplit("/", 1)[1]
    base = f"http://127.0.0.1:{port}{paths.FILES}/"
    expired = service.cli("link", tid, "--ttl", "1s").stdout.strip()
    secret, now = signing_key(ledger)
    refused = [token[:-1] + ("A" if token[-1] != "A" else "B"),
               sign_token(bytes(32), FileToken("disk", "default/c1/rec_c1.mp4", now_ms() + 60_000)),
               "garbage", "a.b", token.split(".")[0]]
    time.sleep(1.5)
    for text in [*refused, expired.rsplit("/", 1)[1]]:
        answer = httpx.get(base + text, timeout=10)
        assert (answer.status_code, answer.text) == (403, NOT_VALID), text
    for target in ["/files/../../outside.txt", "/files/..%2F..%2Foutside.txt", "/files/%2e%2e/%2e%2e/outside.txt",
                   f"/files/{token}/../../../outside.txt", "/files/", "/files/a/b", f"/files/{token}/x"]:
        status, body = raw_get(port, target)
        assert status in (403, 404) and b"OUTSIDE" not in body, target
    for key in ["../outside.txt", "../../etc/passwd", "/etc/passwd", "default/../../outside.txt"]:
        status, body = raw_get(port, "/files/" + sign_token(secret, FileToken("disk", key, now + 60_000)))
        assert status == 404 and b"OUTSIDE" not in body and b"root:" not in body, key
    status, _ = raw_get(port, "/files/" + sign_token(secret, FileToken("s3", "x.mp4", now + 60_000)))
    assert status == 404
    assert httpx.get(url, timeout=10).content == b"inside"  # the good link still works


def test_archiver_link_refuses_clearly(archiver: Callable[..., Archiver], tmp_path: Path, ledger: Ledger) -> None:
    """--ttl past max_link_ttl is cut to it and said; a transfer not archived, an unknown id, local disk
    without public_url: exit 1 and why, nothing on stdout; a bad --ttl: exit 2."""
    root = tmp_path / "disk"
    service = start(archiver, [local_storage(root)], max_link_ttl="2m")
    tid = archived_on_disk(ledger, root, "c1")
    capped = service.cli("link", tid, "--ttl", "1h")
    assert capped.returncode == 0 and "--ttl 1h is longer than max_link_ttl (2m): the link lasts 2m" in capped.stderr
    secret, now = signing_key(ledger)
    grant = read_token(secret, capped.stdout.strip().rsplit("/", 1)[1], now)
    assert grant is not None and abs(grant.expires_ms - (now + 120_000)) < 10_000
    (failed,) = add(ledger, "c2", "failed")
    for args, words in [((failed,), f"transfer {failed} is failed, not archived"),
                        (("t_nope",), "no transfer 't_nope'")]:
        result = service.cli("link", *args)
        assert (result.returncode, result.stdout) == (1, ""), result.stderr
        assert words in result.stderr
    for bad in ("0s", "soon", "-5m"):
        assert service.cli("link", tid, "--ttl", bad).returncode == 2
    no_public = archiver([local_storage(root)])
    result = no_public.cli("link", tid)
    assert result.returncode == 1 and result.stdout == "" and "public_url" in result.stderr


def test_an_s3_link_is_the_stores_own_and_the_download_button_gets_a_fresh_one(
        archiver: Callable[..., Archiver], tmp_path: Path, ledger: Ledger, moto_server: str, bucket: str,
        moto_client: S3Client) -> None:
    """An object in S3: `archiver link` prints a SigV4 presigned URL of moto's (no receiver in between); the
    status page's button (POST /links/<tid>, the status token as basic auth, same-origin) answers 303 to a
    fresh one; without the token, 401; from another site, 403."""
    service = start(archiver, [s3_storage(moto_server, bucket), local_storage(tmp_path / "disk")])
    (tid,) = add(ledger, "c3", "archived", storages=("s3",))
    moto_client.put_object(Bucket=bucket, Key="recordings/default/c3/rec_c3.mp4", Body=DATA)
    result = service.cli("link", tid)
    assert result.returncode == 0, result.stderr
    (url,) = result.stdout.splitlines()
    assert url.startswith(f"{moto_server}/{bucket}/recordings/default/c3/rec_c3.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256")
    assert httpx.get(url, timeout=30).content == DATA
    button = f"http://127.0.0.1:{service.web_port}{paths.LINKS}/{tid}"
    assert httpx.post(button, timeout=10).status_code == 401
    same = {"Sec-Fetch-Site": "same-origin"}
    other_site = httpx.post(button, auth=("ops", TOKEN), headers={"Sec-Fetch-Site": "cross-site"}, timeout=10)
    assert other_site.status_code == 403
    answer = httpx.post(button, auth=("ops", TOKEN), headers=same, timeout=10)
    assert answer.status_code == 303 and answer.headers["location"].startswith(f"{moto_server}/{bucket}/")
    assert httpx.get(answer.headers["location"], timeout=30).content == DATA
    page = httpx.get(f"http://127.0.0.1:{service.web_port}/", params={"call": "default:c3"}, auth=("ops", TOKEN),
                     timeout=10).text
    assert f'action="{paths.LINKS}/{tid}"' in page


def test_the_download_button_opens_the_link_in_a_real_browser(
        archiver: Callable[..., Archiver], tmp_path: Path, ledger: Ledger, moto_server: str, bucket: str,
        moto_client: S3Client, chromium: Any) -> None:  # noqa: F811 - the fixture imported above
    """Headless Chromium on the status page clicks the download button of a file archived to S3: it lands
    on the object at moto (another origin), despite the page's form-action 'self' (a 303 there would be
    blocked), with no CSP violation logged."""
    service = start(archiver, [s3_storage(moto_server, bucket)])
    (tid,) = add(ledger, "c4", "archived", storages=("s3",))
    moto_client.put_object(Bucket=bucket, Key="recordings/default/c4/rec_c4.mp4", Body=b"opened in a browser",
                           ContentType="text/plain")
    chromium.execute_cdp_cmd("Network.enable", {})
    chromium.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Bearer {TOKEN}"}})
    chromium.get(f"http://127.0.0.1:{service.web_port}/?call=default:c4")
    chromium.find_element("css selector", f'form[action="{paths.LINKS}/{tid}"] button').click()
    wait_until(lambda: chromium.current_url.startswith(f"{moto_server}/{bucket}/"), timeout=15,
               message="the browser at the link")
    wait_until(lambda: "opened in a browser" in chromium.find_element("tag name", "body").text, timeout=15,
               message="the object in the browser")
    assert not [e for e in chromium.get_log("browser") if "Content Security Policy" in e["message"]]
