"""One-file download permissions (worker/intake/permits.py), as `archiver try` writes them and the download guard and
routing read them: exactly one URL (scheme, host, port, path; any query), only while the ledger holds it, and
never anything a payload can create."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.fakestream.server import FakeStream
from worker.errors import DownloadRefused
from worker.files import StreamFile
from worker.intake.permits import LedgerPermits, grant, permit_url, permitted_call, revoke
from worker.intake.record import record_file, record_routes
from worker.intake.resolve import resolve_file
from worker.intake.webhook import ready_file
from worker.ledger.store import Ledger
from worker.runtime import Runtime
from worker.transfer.download import DownloadClient, http_client, open_download
from worker.transfer.run import run_transfer
from worker.transfer.url_guard import check_url

CDN = ["*.stream-io-cdn.com"]
CALL = "default:archiver-try-0123456789ab"


class Origin(ThreadingHTTPServer):
    """A loopback server that answers every path with the path itself, except `/hop`: a redirect to `/b`."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                origin.paths.append(self.path)
                if self.path.startswith("/hop"):
                    self.send_response(302)
                    self.send_header("Location", "/b")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = self.path.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def downloader(ledger: Ledger, resolve: dict[str, str] | None = None) -> DownloadClient:
    """The worker's download client: the default download_hosts, and the ledger's permissions."""
    if resolve is None:
        return http_client(CDN, 2.0, 5.0, permits=LedgerPermits(ledger))
    table = resolve

    def names(host: str, port: int) -> Sequence[str]:
        return [table.get(host, host)]

    return http_client(CDN, 2.0, 5.0, permits=LedgerPermits(ledger), resolve=names)


def fetch(http: DownloadClient, url: str) -> bytes:
    with open_download(http, url, 1024) as download:
        return b"".join(download.chunks())


def test_a_permitted_loopback_url_is_downloaded_whatever_its_query(ledger: Ledger, origin: Origin) -> None:
    grant(ledger, f"{origin.base}/a.mp3?Expires=1", CALL, 60_000)
    assert fetch(downloader(ledger), f"{origin.base}/a.mp3?Expires=2&Signature=x") == b"/a.mp3?Expires=2&Signature=x"


def test_a_loopback_url_without_a_permission_is_refused_before_any_connection(ledger: Ledger,
                                                                               origin: Origin) -> None:
    with pytest.raises(DownloadRefused, match="not on an allowed download host"):
        fetch(downloader(ledger), f"{origin.base}/a.mp3")
    assert origin.paths == []


@pytest.mark.parametrize("other", ["{base}/b.mp3", "{base}/a.mp3/", "{base}/A.mp3", "{base}/a.mp", "{base}/",
                                   "http://127.0.0.2:{port}/a.mp3", "http://localhost:{port}/a.mp3",
                                   "http://127.0.0.1:{other_port}/a.mp3", "https://127.0.0.1:{port}/a.mp3"])
def test_a_permission_for_one_path_allows_no_other_url(ledger: Ledger, origin: Origin, other: str) -> None:
    port = origin.server_address[1]
    grant(ledger, f"{origin.base}/a.mp3", CALL, 60_000)
    url = other.format(base=origin.base, port=port, other_port=port + 1 if port < 65535 else port - 1)
    with pytest.raises(DownloadRefused):
        fetch(downloader(ledger), url)
    assert origin.paths == []


def test_a_redirect_from_a_permitted_url_is_checked_again(ledger: Ledger, origin: Origin) -> None:
    grant(ledger, f"{origin.base}/hop", CALL, 60_000)
    with pytest.raises(DownloadRefused, match="/b is not on an allowed download host"):
        fetch(downloader(ledger), f"{origin.base}/hop")
    assert origin.paths == ["/hop"]


def test_a_permission_excuses_no_malformed_url(ledger: Ledger, origin: Origin) -> None:
    """A user name in the URL is refused even when the rest of it matches a permission."""
    grant(ledger, f"{origin.base}/a.mp3", CALL, 60_000)
    with pytest.raises(DownloadRefused, match="user name or password"):
        check_url(origin.base.replace("http://", "http://u:p@") + "/a.mp3", CDN, LedgerPermits(ledger))


def test_a_permitted_name_may_connect_to_the_inside_address_it_resolves_to(ledger: Ledger, origin: Origin) -> None:
    """`--serve-host worker`: a name outside download_hosts resolving to a private address, permitted exactly."""
    url = f"http://try-host.internal:{origin.server_address[1]}/a.mp3"
    grant(ledger, url, CALL, 60_000)
    assert fetch(downloader(ledger, {"try-host.internal": "127.0.0.1"}), url) == b"/a.mp3"


def test_a_permission_ends_when_revoked_or_when_its_time_is_up(ledger: Ledger, origin: Origin) -> None:
    url = f"{origin.base}/a.mp3"
    grant(ledger, url, CALL, 60_000)
    revoke(ledger, [url])
    assert not LedgerPermits(ledger)(url)
    grant(ledger, url, CALL, 60_000)
    assert ledger.redis.pttl(f"archiver:trial_permit:{permit_url(url)}") > 59_000
    with pytest.raises(ValueError, match="http"):
        grant(ledger, "file:///etc/passwd", CALL, 60_000)


def test_the_permission_key_is_the_exact_url_without_query() -> None:
    assert permit_url("HTTP://127.0.0.1:8080/x/y.mp3?Expires=1#f") == "http://127.0.0.1:8080/x/y.mp3"
    assert permit_url("http://[::1]/x") == "http://[::1]:80/x"
    assert permit_url("https://cdn.test/x") == "https://cdn.test:443/x"
    assert permit_url("file:///etc/passwd") is None


# -- the worker: transfers and routing --------------------------------------------------------------------------

@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime], fake: FakeStream) -> Runtime:
    """Call-level routing on (the default), Stream's API down (a call lookup would make the file wait), and
    the default download hosts: only a permission lets a download from the test origin through."""
    runtime = make_runtime(call_lookup_timeout="1h", download_hosts=["*.stream-io-cdn.com"])
    fake.fail_next_api("/video/call/", 503, count=100)
    return runtime


def recorded(runtime: Runtime, fake: FakeStream, call_cid: str, url: str) -> str:
    event = fake.event_for(fake.add_recording(call_cid, b"x"))
    event["call_recording"]["url"] = url
    file = ready_file(event)
    assert isinstance(file, StreamFile)
    return record_file(runtime.archive, runtime.ledger, file).file_id


@pytest.mark.parametrize(("permitted", "archived"), [(None, False), ("/other.mp3", False), ("/a.mp3", True)])
def test_a_webhooks_loopback_url_is_archived_only_with_a_permission_for_exactly_it(
        runtime: Runtime, fake: FakeStream, origin: Origin, permitted: str | None, archived: bool) -> None:
    """Through the worker's own transfer: refused (DownloadRefused, nothing fetched) without a permission,
    or with one for another path on the same port."""
    if permitted is not None:
        grant(runtime.ledger, origin.base + permitted, CALL, 60_000)
    event = fake.event_for(fake.add_recording(CALL, b"x"))
    event["call_recording"]["url"] = f"{origin.base}/a.mp3?Expires=1"
    file = ready_file(event)
    assert isinstance(file, StreamFile)
    [transfer_id] = record_routes(runtime.archive, runtime.ledger, file).transfer_ids
    assert run_transfer(runtime, transfer_id) == ("archived" if archived else "failed")
    transfer = runtime.ledger.get(transfer_id)
    assert transfer is not None
    if not archived:
        assert transfer.reason == "DownloadRefused" and origin.paths == []
    else:
        assert origin.paths == ["/a.mp3?Expires=1"]


def test_the_trials_file_is_routed_at_once_without_asking_stream(runtime: Runtime, fake: FakeStream) -> None:
    url = "http://127.0.0.1:9/video/recordings/x/rec.mp3"
    grant(runtime.ledger, url, CALL, 60_000)
    file_id = recorded(runtime, fake, CALL, url + "?Expires=1")
    assert len(resolve_file(runtime, file_id)) == 1
    assert runtime.ledger.file(file_id)["routing"] == "resolved"
    assert not [r for r in fake.api_requests if "/video/call/" in r.path]


def test_a_payload_naming_a_permitted_url_for_another_call_still_waits_for_its_call(runtime: Runtime,
                                                                                     fake: FakeStream) -> None:
    url = "http://127.0.0.1:9/video/recordings/x/rec.mp3"
    grant(runtime.ledger, url, CALL, 60_000)
    file_id = recorded(runtime, fake, "default:someone-else", url)
    assert resolve_file(runtime, file_id) == []
    assert runtime.ledger.file(file_id)["routing"] == "pending"
    assert permitted_call(runtime.ledger, url) == CALL
