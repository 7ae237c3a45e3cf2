"""Where a download may go (worker/transfer/url_guard.py, used by worker/transfer/download.py): only
`download_hosts`, never inside the network unless listed exactly, checked on the URL's text and again on the
addresses connected to. No network beyond loopback: names are resolved by an injected resolver, the system
resolver only sees IP literals."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.errors import DownloadRefused, SourceUnavailable
from worker.transfer.download import DownloadClient, http_client, open_download
from worker.transfer.url_guard import AddressGuard, address_problem, check_url, host_allowed

CDN = ["*.stream-io-cdn.com"]
SIGNED = "?X-Amz-Signature=c0ffee&Expires=1764237600&Signature=s3cr3t"


class Origin:
    """A loopback HTTP server that records what reached it and answers by path: `/redirect?to=URL`
    redirects, anything else answers 200 with the request's Host header as its body."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []  # (path, Host header)
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                origin.requests.append((self.path, self.headers.get("host", "")))
                if self.path.startswith("/redirect?to="):
                    self.send_response(302)
                    self.send_header("Location", self.path.removeprefix("/redirect?to="))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = self.headers.get("host", "").encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def names(table: dict[str, str]) -> Callable[[str, int], Sequence[str]]:
    """A resolver from a table of names; IP literals resolve to themselves."""

    def resolve(host: str, port: int) -> Sequence[str]:
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        if host not in table:
            raise ConnectionError(f"cannot resolve {host}")
        return [table[host]]

    return resolve


@contextmanager
def client(patterns: Sequence[str], resolve: Callable[[str, int], Sequence[str]] | None = None
           ) -> Iterator[DownloadClient]:
    http = http_client(patterns, 2.0, 5.0) if resolve is None else http_client(patterns, 2.0, 5.0, resolve=resolve)
    with http:
        yield http


# -- the URL's text -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "url",
    [
        "https://ohio.stream-io-cdn.com@127.0.0.1/",  # userinfo: the host is 127.0.0.1
        "https://ohio.stream-io-cdn.com:x@evil.example/",
        "https://user@ohio.stream-io-cdn.com/",  # a signed CDN URL never carries userinfo
        "https://evil.example\\@ohio.stream-io-cdn.com/",
        "http://127.0.0.1/", "http://127.0.0.1:6379/", "http://0.0.0.0/", "http://0/",
        "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://192.168.1.1/",
        "http://172.16.0.1/", "http://100.64.0.1/", "http://224.0.0.1/", "http://255.255.255.255/",
        "http://[::1]/", "http://[::]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:a9fe:a9fe]/",
        "http://[fe80::1%25eth0]/", "http://[fc00::1]/", "http://[ff02::1]/", "http://[2002:7f00:1::]/",
        "http://[64:ff9b::a9fe:a9fe]/", "http://[::127.0.0.1]/", "https://[fec0::1]/", "https://[feff::2]/",
        "http://2130706433/", "http://0x7f000001/", "http://0x7f.1/", "http://0177.0.0.1/", "http://127.1/",
        "http://017700000001/", "http://127.0.0.1./", "http://localhost/", "http://LOCALHOST/",
        "http://localhost./", "http://foo.localhost/", "http://ⓛocalhost/", "http://ｌｏｃａｌｈｏｓｔ/",
        "http://127。0。0。1/", "file:///etc/passwd", "gopher://127.0.0.1/", "ftp://ohio.stream-io-cdn.com/",
        "//ohio.stream-io-cdn.com/", "https:///x", "not a url", "https://ohio.stream-io-cdn.com:99999/",
        "https://a%00b.stream-io-cdn.com/", "https://ohio.stream-io-cdn.com:0/",
    ],
)
def test_hosts_inside_the_network_are_refused_even_by_an_allow_all_pattern(url: str) -> None:
    """With download_hosts = ["*"] every inside address, spelling trick and odd scheme is still refused."""
    with pytest.raises(DownloadRefused):
        check_url(url + SIGNED, ["*"])
    assert not host_allowed(url, ["*"])


@pytest.mark.parametrize(
    "url",
    ["https://ohio.stream-io-cdn.com/video/rec.mp4", "HTTPS://Ohio.Stream-IO-CDN.com/rec.mp4",
     "https://ohio.stream-io-cdn.com:443/rec.mp4", "https://xn--bcher-kva.stream-io-cdn.com/rec.mp4",
     "https://bücher.stream-io-cdn.com/rec.mp4"],
)
def test_cdn_urls_are_allowed(url: str) -> None:
    """Stream's CDN host names (any case, default port, IDNA) pass the text check."""
    check_url(url + SIGNED, CDN)


@pytest.mark.parametrize(
    "url",
    ["https://stream-io-cdn.com.evil.example/", "https://evil.example/x.stream-io-cdn.com",
     "https://evil.example?.stream-io-cdn.com", "https://evil.example#.stream-io-cdn.com",
     "https://ohio.stream-io-cdn.com./", "https://evil-stream-io-cdn.com/"],
)
def test_hosts_that_only_look_like_the_cdn_are_refused(url: str) -> None:
    """Look-alike hosts (the CDN name in the path, query, fragment, a trailing dot) are not on the list."""
    with pytest.raises(DownloadRefused, match="not on an allowed download host|invalid host"):
        check_url(url, CDN)


@pytest.mark.parametrize(
    ("url", "patterns"),
    [("http://frankfurt.stream-io-cdn.com/rec.mp4", CDN), ("https://ohio.stream-io-cdn.com:8443/rec.mp4", CDN),
     ("http://ohio.stream-io-cdn.com:443/rec.mp4", CDN), ("https://ohio.stream-io-cdn.com:8443/", ["*:8443"]),
     ("https://ohio.stream-io-cdn.com:8443/", ["*.stream-io-cdn.com:8443"]), ("http://8.8.8.8/", ["*"]),
     ("http://cdn.example.org/rec.mp4", ["cdn.example.org"]), ("https://cdn.example.org:8443/", ["cdn.example.org"])],
)
def test_plain_http_and_other_ports_need_the_host_and_port_listed_exactly(url: str, patterns: list[str]) -> None:
    """A wildcard pattern, or a bare host, allows https on 443 only: nothing else to an unlisted port."""
    with pytest.raises(DownloadRefused, match="plain http or not on port 443"):
        check_url(url + SIGNED, patterns)
    assert not host_allowed(url, patterns)


def test_plain_http_and_other_ports_pass_when_listed_with_their_port() -> None:
    check_url("http://cdn.example.org/rec.mp4", ["cdn.example.org:80"])
    check_url("https://cdn.example.org:8443/rec.mp4", ["*.stream-io-cdn.com", "cdn.example.org:8443"])
    check_url("https://cdn.example.org/rec.mp4", ["cdn.example.org"])
    check_url("http://[2606:4700:4700::1111]:8080/rec.mp4", ["[2606:4700:4700::1111]:8080"])


def test_a_one_file_permission_still_opens_a_plain_http_url_on_another_port() -> None:
    """`archiver try`'s path: a permission for exactly this URL lets it through, as before."""
    url = "http://127.0.0.1:8099/sample.mp4"
    assert check_url(url + SIGNED, CDN, permits=lambda u: u.startswith(url)) is True
    with pytest.raises(DownloadRefused):
        check_url(url, CDN, permits=lambda _: False)


def test_an_exactly_listed_private_host_is_allowed_and_only_that_one() -> None:
    """A pattern without wildcards opts one private host:port in; a wildcard one never does."""
    check_url("http://127.0.0.1:8080/rec.mp4", ["127.0.0.1:8080"])
    check_url("http://[::1]:8080/rec.mp4", ["[::1]:8080"])
    check_url("http://cdn.internal/rec.mp4", ["cdn.internal:80"])
    check_url("https://cdn.internal/rec.mp4", ["cdn.internal"])
    check_url("https://cdn.internal/rec.mp4", ["cdn.internal:443"])
    for url, patterns in [("http://127.0.0.1:8081/", ["127.0.0.1:8080"]), ("http://127.0.0.1:8080/", ["*:8080"]),
                          ("http://127.0.0.1:8080/", ["127.0.0.*:8080"]),
                          ("http://127.0.0.1:8080/", ["127.0.0.?:8080"]),
                          ("http://localhost:8080/", ["127.0.0.1:8080"]),
                          ("http://cdn.example.org:8080/", ["cdn.example.org:80"]),
                          ("https://cdn.example.org:8443/", ["cdn.example.org:443"])]:
        with pytest.raises(DownloadRefused):
            check_url(url, patterns)


def test_a_refusal_never_shows_the_query_string_or_userinfo() -> None:
    """The signed URL is a credential: DownloadRefused names the host and path only."""
    for url in ["http://169.254.169.254/latest" + SIGNED, "https://user:hunter2@evil.example/x" + SIGNED]:
        with pytest.raises(DownloadRefused) as refused:
            check_url(url, CDN)
        message = str(refused.value)
        assert "Signature" not in message and "c0ffee" not in message and "hunter2" not in message


@pytest.mark.parametrize(
    ("address", "problem"),
    [("127.0.0.1", "loopback"), ("0.0.0.0", "unspecified"), ("169.254.169.254", "link-local"),
     ("10.1.2.3", "private"), ("224.0.0.251", "multicast"), ("100.64.0.1", "non-global"), ("::1", "loopback"),
     ("::ffff:169.254.169.254", "link-local"), ("2002:a00:1::", "private"), ("64:ff9b::7f00:1", "loopback"),
     ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # Teredo: the client is 127.0.0.1 (obfuscated)
     ("fe80::1%eth0", "link-local"), ("fec0::1", "site-local"), ("feff:ffff::1", "site-local"),
     ("8.8.8.8", None), ("2606:4700:4700::1111", None)],
)
def test_address_problems_name_the_kind(address: str, problem: str | None) -> None:
    """Embedded IPv4 (mapped, 6to4, NAT64, Teredo) is judged as the IPv4 address it carries."""
    assert address_problem(address) == problem


@settings(max_examples=300, deadline=None)
@given(st.ip_addresses())
def test_an_ip_literal_passes_the_wildcard_only_when_it_is_global(ip: Any) -> None:
    """Property: for any IPv4/IPv6 literal, an allow-all pattern admits it exactly when it is public."""
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    assert host_allowed(f"https://{host}/rec.mp4", ["*"]) == (address_problem(ip) is None)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["127.0.0.0/8", "10.0.0.0/8", "169.254.0.0/16", "192.168.0.0/16", "0.0.0.0/8"]).flatmap(
    lambda net: st.ip_addresses(network=net)))
def test_other_spellings_of_inside_addresses_are_refused(ip: ipaddress.IPv4Address) -> None:
    """Property: decimal, hex, octal and short spellings of an inside IPv4 address are all refused."""
    number, octets = int(ip), str(ip).split(".")
    spellings = [str(number), hex(number), "0" + oct(number)[2:], ".".join("0" + oct(int(o))[2:] for o in octets),
                 ".".join(hex(int(o)) for o in octets), f"{octets[0]}.{number & 0xFFFFFF}", f"{ip}.",
                 f"[::ffff:{ip}]"]
    for spelling in spellings:
        assert not host_allowed(f"http://{spelling}/x", ["*"]), spelling


# -- the addresses connected to -------------------------------------------------------------------------------

def test_a_cdn_name_resolving_inside_is_refused_at_connect_time(origin: Origin) -> None:
    """DNS says the CDN name is 127.0.0.1 (rebinding): the text check passes, the connection is refused."""
    url = f"https://ohio.stream-io-cdn.com/rec.mp4{SIGNED}"
    check_url(url, CDN)
    with client(CDN, names({"ohio.stream-io-cdn.com": "127.0.0.1"})) as http:
        with pytest.raises(DownloadRefused, match="resolves to 127.0.0.1, a loopback address") as refused:
            open_download(http, url, 1024)
    assert "Signature" not in str(refused.value)
    assert origin.requests == []


@pytest.mark.parametrize("inside", ["10.0.0.7", "169.254.169.254", "::1", "::ffff:127.0.0.1", "0.0.0.0", "fec0::7"])
def test_any_inside_address_among_the_answers_refuses_the_host(inside: str) -> None:
    """One inside address among public ones is enough: the host is refused, nothing is connected."""
    calls: list[str] = []

    def resolve(host: str, port: int) -> Sequence[str]:
        calls.append(host)
        return ["8.8.8.8", inside]

    guard = AddressGuard(CDN, resolve)
    with pytest.raises(DownloadRefused, match="resolves to"):
        guard.connect("ohio.stream-io-cdn.com", 443, timeout=1)
    assert calls == ["ohio.stream-io-cdn.com"]


def test_the_connection_goes_to_the_address_checked_with_the_name_in_host(origin: Origin) -> None:
    """An exactly listed name is resolved once, by the guard, and the connection goes to that address:
    `cdn.test` exists in no DNS, so the request only arrives because the checked IP was used."""
    asked: list[str] = []

    def resolve(host: str, port: int) -> Sequence[str]:
        asked.append(host)
        return ["127.0.0.1"]

    host = f"cdn.test:{origin.port}"
    with client([host], resolve) as http, open_download(http, f"http://{host}/rec.mp4{SIGNED}", 1024) as download:
        assert b"".join(download.chunks()) == host.encode()
    assert asked == ["cdn.test"] and origin.requests[0][1] == host


def test_the_explicitly_listed_loopback_cdn_still_works(origin: Origin) -> None:
    """The tests' fake CDN is "127.0.0.1:PORT", listed exactly: the real resolver, a real download."""
    with client([origin.host]) as http, open_download(http, f"http://{origin.host}/rec.mp4{SIGNED}", 1024) as dl:
        assert b"".join(dl.chunks()) == origin.host.encode()


@pytest.mark.parametrize(
    "target",
    ["http://169.254.169.254/latest/meta-data/", "http://localhost:{port}/x", "http://[::1]:{port}/x",
     "http://127.0.0.1:{port}/other-port", "file:///etc/passwd", "http://2130706433:{port}/x"],
)
def test_a_redirect_inside_is_refused(origin: Origin, target: str) -> None:
    """The listed CDN redirecting to metadata, loopback under another name, or another port: refused."""
    location = target.format(port=origin.port + 1 if "other-port" in target else origin.port)
    with client([origin.host]) as http, pytest.raises(DownloadRefused):
        open_download(http, f"http://{origin.host}/redirect?to={location}", 1024)
    assert [path for path, _ in origin.requests] == [f"/redirect?to={location}"]


def test_a_redirect_to_a_cdn_name_resolving_inside_is_refused(origin: Origin) -> None:
    """A redirect to an allowed name is checked again at connect time."""
    location = "https://evil.stream-io-cdn.com/x"
    resolve = names({"evil.stream-io-cdn.com": "127.0.0.1"})
    with client([origin.host, *CDN], resolve) as http, pytest.raises(DownloadRefused, match="loopback"):
        open_download(http, f"http://{origin.host}/redirect?to={location}", 1024)
    assert len(origin.requests) == 1


def test_an_unresolvable_host_is_a_transient_error() -> None:
    """A name that does not resolve is SourceUnavailable (retried), not a refusal, and shows no query."""
    with client(CDN, names({})) as http, pytest.raises(SourceUnavailable) as caught:
        open_download(http, f"https://nowhere.stream-io-cdn.com/rec.mp4{SIGNED}", 1024)
    assert "Signature" not in str(caught.value)


def test_environment_proxies_are_not_used(origin: Origin, monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP(S)_PROXY would move the connection out of the guard's sight: downloads ignore it."""
    proxy = Origin()
    proxy.thread.start()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://{proxy.host}")
        monkeypatch.setenv("ALL_PROXY", f"http://{proxy.host}")
        with client([origin.host]) as http, open_download(http, f"http://{origin.host}/rec.mp4", 1024) as dl:
            assert b"".join(dl.chunks()) == origin.host.encode()
        assert proxy.requests == [] and len(origin.requests) == 1
    finally:
        proxy.server.shutdown()
        proxy.server.server_close()
