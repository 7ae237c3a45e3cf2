"""Downloading a file from Stream's signed URL: only from allowed hosts, streamed, checked.

The URL is a credential: it is never logged or put into an error message with its query string.
A download may start part-way (``offset``): it then asks for ``Range: bytes=N-`` (with
``If-Range: <ETag>`` when one is known) and accepts a 206 only when its ``Content-Range`` starts
at N; a 200 is the whole file again (the server ignored the range, or the file changed), and
`Download.start` is then 0 so the caller can tell.

Where a download may go (a forged or hostile URL must not reach inside the network), checked twice:

* `check_url`, on every URL and every redirect, as `httpx.URL` parses it (the connection is made
  from that same parse):
  http(s) only, no userinfo (``https://cdn@127.0.0.1/``), a valid host name or a canonical IP
  literal (``2130706433``, ``0x7f.1``, ``127.1`` are refused), the host or ``host:port`` matching a
  ``download_hosts`` pattern, https on port 443 unless the pattern names ``host:port`` exactly
  (plain http and any other port need that; a wildcard pattern allows https on 443 only), and no
  loopback / private / link-local / site-local / multicast / unspecified / reserved IP literal
  (embedded IPv4 of ``::ffff:``, 6to4, NAT64 and Teredo addresses included);
* `AddressGuard`, which opens every connection: it resolves the host once, checks
  every address the same way and connects to a checked address (TLS SNI and Host stay the name),
  so DNS rebinding cannot swap in an inside address between the check and the connection.

An operator opts a private host in by listing it *exactly*: a pattern without wildcards equal to
the host (https on 443) or ``host:port`` (``"127.0.0.1:8080"``, ``"cdn.internal"``, ``"cdn.internal:80"``
for plain http). A refusal is DownloadRefused.
Environment proxies are not used for downloads: the guard must see the address connected to.

One more way in, for one file at a time: a one-file permission in the ledger (`worker.intake.permits`,
written only by ``archiver try`` for the sample it serves itself). A well-formed http(s) URL that
`download_hosts` refuses is accepted when `permits` holds a permission for exactly that URL
(scheme, host, port and path; the query aside), and then only that connection may go to a
loopback or private address. Nothing in a payload creates a permission; every other URL, and
every redirect, is checked as above.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from types import TracebackType
from urllib.parse import urljoin

import certifi
import httpx

from config.logging import redact_url, scrub
from worker.errors import DownloadRefused, IncompleteDownload, SourceMissing, SourceUnavailable, UrlRefused

MISSING_STATUSES = frozenset({401, 403, 404, 410})
REFUSED_STATUSES = frozenset({401, 403, 410})  # the signature no longer grants the file: a fresh URL may
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_HOSTNAME = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)(\.(?!-)[a-z0-9_-]{1,63}(?<!-))*$")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HEADERS = {"Accept-Encoding": "identity", "User-Agent": "stream-archiver"}
MAX_REDIRECTS = 5
Resolver = Callable[[str, int], Sequence[str]]
Permits = Callable[[str], bool]  # whether the ledger holds a one-file permission for exactly this URL
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def address_problem(address: str | IPAddress) -> str | None:
    """Why a download must not connect to `address` ("loopback", "private", ...), or None."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and (problem := address_problem(embedded)):
            return problem
    site_local = isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local  # fec0::/10, deprecated, still inside
    flags = (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
             ("site-local", site_local), ("multicast", ip.is_multicast), ("private", ip.is_private),
             ("reserved", ip.is_reserved))
    for name, flag in flags:
        if flag:
            return name
    return None if ip.is_global else "non-global"


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _candidates(host: str, port: int) -> set[str]:
    """The strings a download_hosts pattern is matched against: host, host:port (IPv6 bracketed too)."""
    bracketed = f"[{host}]" if ":" in host else host
    return {host, bracketed, f"{bracketed}:{port}"}


def listed_exactly(host: str, port: int, patterns: Iterable[str]) -> bool:
    """True when a pattern is, literally, this host or host:port (a host never holds ``*`` or ``?``,
    so a wildcard pattern never is; ``[::1]:8080`` is the bracketed IPv6 form)."""
    names = _candidates(host, port)
    return any(p in names for p in patterns)


def listed_with_port(host: str, port: int, patterns: Iterable[str]) -> bool:
    """True when a pattern is, literally, this ``host:port`` (``[::1]:8080`` for IPv6): what plain http
    or a port other than 443 needs."""
    bracketed = f"[{host}]" if ":" in host else host
    return f"{bracketed}:{port}" in patterns


def _host_problem(host: str, port: int) -> str | None:
    if not host:
        return "has no host"
    if not 0 < port < 65536:
        return f"has an invalid port {port}"
    if _ip_literal(host) is None and (_NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]) or not _HOSTNAME.match(host)):
        return "has an invalid host (not a DNS name or a canonical IP address)"
    return None


def _host_port_or_fault(url: str) -> tuple[str, int] | str:
    """The URL's (host, port) when it is a well-formed http(s) URL without userinfo, else its fault."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "is not a valid URL"
    if parsed.scheme not in _DEFAULT_PORTS:
        return "is not an http(s) URL"
    if parsed.userinfo:
        return "carries a user name or password"
    host = parsed.raw_host.decode("ascii").lower()
    port = _DEFAULT_PORTS[parsed.scheme] if parsed.port is None else parsed.port
    return _host_problem(host, port) or (host, port)


def _url_problem(url: str, patterns: Sequence[str]) -> str | None:
    form = _host_port_or_fault(url)
    if isinstance(form, str):
        return form
    host, port = form
    https_443 = httpx.URL(url).scheme == "https" and port == 443
    if listed_with_port(host, port, patterns) or (https_443 and listed_exactly(host, port, patterns)):
        return None  # the operator opted this one in, private or not
    if not any(fnmatchcase(c, p) for c in _candidates(host, port) for p in patterns):
        return f"is not on an allowed download host (download_hosts = {list(patterns)})"
    if not https_443:
        name = f"[{host}]" if ":" in host else host
        return f"is plain http or not on port 443; list {name}:{port} exactly in download_hosts to allow it"
    ip = _ip_literal(host)
    problem = address_problem(ip) if ip is not None else None
    if problem is None and (host == "localhost" or host.endswith(".localhost")):
        problem = "loopback"
    return None if problem is None else f"names a {problem} address; list it exactly in download_hosts to allow it"


def host_allowed(url: str, patterns: Sequence[str]) -> bool:
    """True when `url` may be downloaded as far as its text tells (see the module docstring)."""
    return _url_problem(url, patterns) is None


def check_url(url: str, patterns: Sequence[str], permits: Permits | None = None) -> bool:
    """Raise DownloadRefused unless `url` may be downloaded (the message has no query string).

    True when only a one-file permission in `permits` allows it: its connection may then go to a
    loopback or private address (see the module docstring)."""
    problem = _url_problem(url, patterns)
    if problem is None:
        return False
    if permits is not None and not isinstance(_host_port_or_fault(url), str) and permits(url):
        return True
    raise DownloadRefused(f"{redact_url(url)} {problem}")


def resolve_host(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (the system resolver); ConnectionError when none."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ConnectionError(f"cannot resolve {host}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class AddressGuard:
    """Opens every download connection: resolves the host once, checks every address it resolves
    to, and connects to a checked address (no DNS rebinding between check and connection)."""

    def __init__(self, patterns: Sequence[str], resolve: Resolver = resolve_host) -> None:
        self._patterns, self._resolve = tuple(patterns), resolve

    def connect(self, host: str, port: int, timeout: float, *, permitted: bool = False) -> socket.socket:
        """A connected socket. Raises DownloadRefused for a forbidden address, OSError as usual.
        `permitted`: a one-file permission allows this connection to any address (`check_url`)."""
        addresses = list(self._resolve(host, port))
        if not addresses:
            raise ConnectionError(f"{host} resolves to no address")
        if not permitted and not listed_exactly(host, port, self._patterns):
            for address in addresses:
                problem = address_problem(address)
                if problem is not None:
                    raise DownloadRefused(f"download host {host}:{port} resolves to {address}, a {problem} "
                                          "address; list it exactly in download_hosts to allow it")
        error: OSError = ConnectionError(f"cannot connect to {host}:{port}")
        for address in addresses:
            try:
                return socket.create_connection((address, port), timeout=timeout)
            except OSError as exc:
                error = exc
        raise error


class _GuardedHTTP(http.client.HTTPConnection):
    """http.client's connection, connecting through the guard (set `guard`, `connect_timeout` and
    `permitted`)."""

    guard: AddressGuard
    connect_timeout: float
    permitted: bool = False

    def connect(self) -> None:
        self.sock = self.guard.connect(self.host, self.port, self.connect_timeout, permitted=self.permitted)
        self.sock.settimeout(self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _GuardedHTTPS(http.client.HTTPSConnection, _GuardedHTTP):
    """TLS over the guarded connection (SNI and certificate checked for the URL's host name)."""


class DownloadClient:
    """GET and HEAD of download URLs with http.client: every URL and redirect checked (`check_url`),
    every connection opened by the guard, no environment proxy, no content decoding. http.client
    reads a body straight into each chunk (one copy), where httpx's h11 path copied it four times:
    a third of the worker's CPU per GiB (bench/)."""

    def __init__(self, patterns: Sequence[str], connect_timeout: float, read_timeout: float, *,
                 resolve: Resolver = resolve_host, permits: Permits | None = None) -> None:
        self.patterns = tuple(patterns)
        self._permits = permits
        self._guard = AddressGuard(patterns, resolve)
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._tls = ssl.create_default_context(cafile=certifi.where())

    def __enter__(self) -> DownloadClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing is pooled: each download owns its connection."""

    def check(self, url: str) -> None:
        """Raise DownloadRefused unless this client may download `url` (`check_url`, with its permits)."""
        check_url(url, self.patterns, self._permits)

    def request(self, method: str, url: str, headers: Mapping[str, str]) -> tuple[str, Response]:
        """`method` `url`, following up to `MAX_REDIRECTS` redirects (each checked); the final URL and
        the open response (close it). Raises DownloadRefused, OSError or http.client.HTTPException."""
        for _ in range(MAX_REDIRECTS + 1):
            permitted = check_url(url, self.patterns, self._permits)
            parsed = httpx.URL(url)  # the parser check_url used: what was checked is what is connected to
            connection = self._connection(parsed, permitted)
            try:
                connection.request(method, parsed.raw_path.decode("ascii"), headers={**_HEADERS, **headers})
                answer = connection.getresponse()
            except BaseException:
                connection.close()
                raise
            response = Response(connection, answer)
            location = answer.getheader("location")
            if answer.status not in _REDIRECTS or not location:
                return url, response
            response.close()
            url = urljoin(url, location)
        raise SourceUnavailable(f"{redact_url(url)}: more than {MAX_REDIRECTS} redirects")

    def _connection(self, url: httpx.URL, permitted: bool) -> http.client.HTTPConnection:
        host = url.raw_host.decode("ascii")
        port = url.port or _DEFAULT_PORTS[url.scheme]
        connection: _GuardedHTTP
        if url.scheme == "https":
            connection = _GuardedHTTPS(host, port, timeout=self._read_timeout, context=self._tls)
        else:
            connection = _GuardedHTTP(host, port, timeout=self._read_timeout)
        connection.guard, connection.connect_timeout = self._guard, self._connect_timeout
        connection.permitted = permitted
        return connection


def http_client(patterns: Sequence[str], connect_timeout: float, read_timeout: float, *,
                resolve: Resolver = resolve_host, permits: Permits | None = None) -> DownloadClient:
    """The download client: only allowed hosts and addresses (redirects too), and URLs `permits`
    holds a one-file permission for. `resolve` (host, port) → addresses is for tests."""
    return DownloadClient(patterns, connect_timeout, read_timeout, resolve=resolve, permits=permits)


@dataclass
class Response:
    """One open answer and the connection it came on."""

    connection: http.client.HTTPConnection
    answer: http.client.HTTPResponse

    @property
    def status(self) -> int:
        return self.answer.status

    def header(self, name: str) -> str:
        return self.answer.getheader(name) or ""

    def close(self) -> None:
        self.answer.close()
        self.connection.close()


@dataclass
class Download:
    """An open download (a context manager that closes it): iterate `chunks()`.

    `start` is the file offset of the body's first byte, `length` the body's Content-Length,
    `total` the whole file's size when known, `etag` the host's ETag.
    """

    url: str
    start: int
    length: int | None
    total: int | None
    etag: str | None
    content_type: str | None
    _response: Response
    _chunk: int
    received: int = 0

    def __enter__(self) -> Download:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection (idempotent)."""
        self._response.close()

    def chunks(self) -> Iterator[bytes]:
        """The body in chunks of `_chunk` bytes (the last may be shorter). When it breaks, or ends
        short of Content-Length, every byte that did arrive is yielded first, then IncompleteDownload
        is raised: `start + received` is where a resume goes on."""
        broke: str | None = None
        while True:
            try:
                chunk = self._response.answer.read(self._chunk)
            except (OSError, http.client.HTTPException) as exc:
                broke = type(exc).__name__
                break
            if not chunk:
                break
            if self.length is not None and self.received + len(chunk) > self.length:
                raise IncompleteDownload(f"{redact_url(self.url)} sent more than {self.length} bytes")
            self.received += len(chunk)
            yield chunk
        self._check_end(broke)

    def _check_end(self, broke: str | None) -> None:
        at = self.start + self.received
        if broke is not None:
            raise IncompleteDownload(f"download of {redact_url(self.url)} broke after {at} bytes: {broke}")
        if self.length is not None and self.received != self.length:
            raise IncompleteDownload(f"{redact_url(self.url)} ended after {at} of {self.start + self.length} bytes")


def open_download(client: DownloadClient, url: str, chunk_size: int, *, offset: int = 0,
                  etag: str | None = None) -> Download:
    """GET `url` as a stream, from byte `offset` on (see the module docstring); map statuses and
    transport errors to the error tree: UrlRefused, SourceMissing (404), SourceUnavailable."""
    shown = redact_url(url)
    try:
        url, response = client.request("GET", url, _range_headers(offset, etag))
    except (OSError, http.client.HTTPException) as exc:
        raise SourceUnavailable(f"cannot download {shown}: {type(exc).__name__}: {scrub(str(exc))}") from None
    try:
        start, total = _check_download(response, shown, offset)
    except BaseException:
        response.close()
        raise
    length = _length(response)
    return Download(url=url, start=start, length=length, total=total if start else length,
                    etag=response.header("etag") or None, content_type=response.header("content-type") or None,
                    _response=response, _chunk=chunk_size)


def _range_headers(offset: int, etag: str | None) -> dict[str, str]:
    if not offset:
        return {}
    headers = {"Range": f"bytes={offset}-"}
    if etag and not etag.startswith("W/"):  # If-Range needs a strong validator
        headers["If-Range"] = etag
    return headers


def _length(response: Response) -> int | None:
    length = response.header("content-length")
    return int(length) if length.isdigit() else None


def _check_download(response: Response, shown: str, offset: int) -> tuple[int, int | None]:
    """(start, total) of an acceptable answer to a GET from `offset`; raises otherwise."""
    if response.status != 206 or not offset:
        _check_status(response, shown)
        return 0, None
    match = _CONTENT_RANGE.match(response.header("content-range").strip())
    if match is None or int(match[1]) != offset:
        raise SourceUnavailable(
            f"{shown} answered a range from byte {offset} with Content-Range {response.header('content-range')!r}"
        )
    return offset, None if match[3] == "*" else int(match[3])


def _check_status(response: Response, shown: str) -> None:
    status = response.status
    if status == 200:
        return
    if status in REFUSED_STATUSES:
        raise UrlRefused(f"{shown} answered {status}: the URL expired or no longer grants the file")
    if status in MISSING_STATUSES:
        raise SourceMissing(f"{shown} answered {status}: the file is gone")
    raise SourceUnavailable(f"{shown} answered {status}")


def source_size(client: DownloadClient, url: str) -> int:
    """The source's Content-Length, from a HEAD request (for a server-side copy)."""
    shown = redact_url(url)
    try:
        _, response = client.request("HEAD", url, {})
    except (OSError, http.client.HTTPException) as exc:
        raise SourceUnavailable(f"cannot reach {shown}: {type(exc).__name__}: {scrub(str(exc))}") from None
    try:
        _check_status(response, shown)
        length = response.header("content-length")
    finally:
        response.close()
    if not length.isdigit():
        raise SourceUnavailable(f"{shown} gave no Content-Length")
    return int(length)
