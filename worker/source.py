"""Downloading a file from Stream's signed URL: only from allowed hosts, streamed, checked.

The URL is a credential: it is never logged or put into an error message with its query string.
A download may start part-way (``offset``): it then asks for ``Range: bytes=N-`` (with
``If-Range: <ETag>`` when one is known) and accepts a 206 only when its ``Content-Range`` starts
at N; a 200 is the whole file again (the server ignored the range, or the file changed), and
`Download.start` is then 0 so the caller can tell.

Where a download may go (a forged or hostile URL must not reach inside the network), checked twice:

* `check_url`, on every URL and every redirect, as httpx parses it (the parser that connects):
  http(s) only, no userinfo (``https://cdn@127.0.0.1/``), a valid host name or a canonical IP
  literal (``2130706433``, ``0x7f.1``, ``127.1`` are refused), the host or ``host:port`` matching a
  ``download_hosts`` pattern, and no loopback / private / link-local / multicast / unspecified /
  reserved IP literal (embedded IPv4 of ``::ffff:``, 6to4, NAT64 and Teredo addresses included);
* `AddressGuard`, the client's network backend, at connect time: it resolves the host once, checks
  every address the same way and connects to a checked address (TLS SNI and Host stay the name),
  so DNS rebinding cannot swap in an inside address between the check and the connection.

An operator opts a private host in by listing it *exactly*: a pattern without wildcards equal to
the host or ``host:port`` (``"127.0.0.1:8080"``, ``"cdn.internal"``). A refusal is DownloadRefused.
Environment proxies are not used for downloads: the guard must see the address connected to.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from types import TracebackType

import httpcore
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
Resolver = Callable[[str, int], Sequence[str]]
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
    flags = (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
             ("multicast", ip.is_multicast), ("private", ip.is_private), ("reserved", ip.is_reserved))
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


def _host_problem(host: str, port: int) -> str | None:
    if not host:
        return "has no host"
    if not 0 < port < 65536:
        return f"has an invalid port {port}"
    if _ip_literal(host) is None and (_NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]) or not _HOSTNAME.match(host)):
        return "has an invalid host (not a DNS name or a canonical IP address)"
    return None


def _url_problem(url: str, patterns: Sequence[str]) -> str | None:
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
    if problem := _host_problem(host, port):
        return problem
    if listed_exactly(host, port, patterns):
        return None  # the operator opted this one in, private or not
    if not any(fnmatchcase(c, p) for c in _candidates(host, port) for p in patterns):
        return f"is not on an allowed download host (download_hosts = {list(patterns)})"
    ip = _ip_literal(host)
    problem = address_problem(ip) if ip is not None else None
    if problem is None and (host == "localhost" or host.endswith(".localhost")):
        problem = "loopback"
    return None if problem is None else f"names a {problem} address; list it exactly in download_hosts to allow it"


def host_allowed(url: str, patterns: Sequence[str]) -> bool:
    """True when `url` may be downloaded as far as its text tells (see the module docstring)."""
    return _url_problem(url, patterns) is None


def check_url(url: str, patterns: Sequence[str]) -> None:
    """Raise DownloadRefused unless `url` may be downloaded (the message has no query string)."""
    problem = _url_problem(url, patterns)
    if problem is not None:
        raise DownloadRefused(f"{redact_url(url)} {problem}")


def resolve_host(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (the system resolver); httpcore.ConnectError when none."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class AddressGuard(httpcore.SyncBackend):
    """httpcore's network backend, checking every address a download host resolves to before
    connecting to it (resolve once, check, connect to that address: no DNS rebinding)."""

    def __init__(self, patterns: Sequence[str], resolve: Resolver = resolve_host) -> None:
        self._patterns, self._resolve = tuple(patterns), resolve

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None) -> httpcore.NetworkStream:
        """Raises DownloadRefused for a forbidden address, httpcore.ConnectError as usual."""
        addresses = list(self._resolve(host, port))
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        if not listed_exactly(host, port, self._patterns):
            for address in addresses:
                problem = address_problem(address)
                if problem is not None:
                    raise DownloadRefused(f"download host {host}:{port} resolves to {address}, a {problem} "
                                          "address; list it exactly in download_hosts to allow it")
        error: Exception = httpcore.ConnectError(f"cannot connect to {host}:{port}")
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error


class _GuardedTransport(httpx.HTTPTransport):
    def __init__(self, guard: AddressGuard, limits: httpx.Limits) -> None:
        super().__init__(limits=limits)
        # httpx (pinned < 0.29) takes no network backend: give its pool one built with ours.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(), max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
            network_backend=guard,
        )


def http_client(patterns: Sequence[str], connect_timeout: float, read_timeout: float, *,
                resolve: Resolver = resolve_host) -> httpx.Client:
    """A client that goes only to allowed hosts and addresses (redirects too), never through an
    environment proxy, and never decodes the body. `resolve` (host, port) → addresses is for tests."""

    def refuse_other_hosts(request: httpx.Request) -> None:
        check_url(str(request.url), patterns)

    timeout = httpx.Timeout(read_timeout, connect=connect_timeout, pool=connect_timeout)
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=10)
    return httpx.Client(
        timeout=timeout,
        follow_redirects=True,
        max_redirects=5,
        event_hooks={"request": [refuse_other_hosts]},
        headers={"Accept-Encoding": "identity", "User-Agent": "stream-archiver"},
        transport=_GuardedTransport(AddressGuard(patterns, resolve), limits),
        trust_env=False,
    )


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
    _response: httpx.Response
    _chunk: int
    received: int = 0

    def __enter__(self) -> Download:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection (idempotent)."""
        try:
            self._response.close()
        except httpx.HTTPError:
            pass  # a broken connection is being thrown away anyway

    def chunks(self) -> Iterator[bytes]:
        """The body in chunks of `_chunk` bytes. When it breaks, or ends short of (or past)
        Content-Length, every byte that did arrive is yielded first, then IncompleteDownload is
        raised: `start + received` is where a resume goes on."""
        pending = bytearray()
        broke: str | None = None
        try:
            for piece in self._response.iter_raw():
                pending += piece
                while len(pending) >= self._chunk:
                    yield self._take(pending, self._chunk)
        except httpx.HTTPError as exc:
            broke = type(exc).__name__
        if pending:
            yield self._take(pending, len(pending))
        self._check_end(broke)

    def _take(self, pending: bytearray, count: int) -> bytes:
        if self.length is not None and self.received + count > self.length:
            raise IncompleteDownload(f"{redact_url(self.url)} sent more than {self.length} bytes")
        chunk = bytes(pending[:count])
        del pending[:count]
        self.received += count
        return chunk

    def _check_end(self, broke: str | None) -> None:
        at = self.start + self.received
        if broke is not None:
            raise IncompleteDownload(f"download of {redact_url(self.url)} broke after {at} bytes: {broke}")
        if self.length is not None and self.received != self.length:
            raise IncompleteDownload(f"{redact_url(self.url)} ended after {at} of {self.start + self.length} bytes")


def open_download(client: httpx.Client, url: str, chunk_size: int, *, offset: int = 0,
                  etag: str | None = None) -> Download:
    """GET `url` as a stream, from byte `offset` on (see the module docstring); map statuses and
    transport errors to the error tree: UrlRefused, SourceMissing (404), SourceUnavailable."""
    shown = redact_url(url)
    headers = _range_headers(offset, etag)
    try:
        response = client.send(client.build_request("GET", url, headers=headers), stream=True)
    except httpx.HTTPError as exc:
        raise SourceUnavailable(f"cannot download {shown}: {type(exc).__name__}: {scrub(str(exc))}") from None
    try:
        start, total = _check_download(response, shown, offset)
    except BaseException:
        response.close()
        raise
    length = _length(response)
    return Download(url=url, start=start, length=length, total=total if start else length,
                    etag=response.headers.get("etag"), content_type=response.headers.get("content-type"),
                    _response=response, _chunk=chunk_size)


def _range_headers(offset: int, etag: str | None) -> dict[str, str]:
    if not offset:
        return {}
    headers = {"Range": f"bytes={offset}-"}
    if etag and not etag.startswith("W/"):  # If-Range needs a strong validator
        headers["If-Range"] = etag
    return headers


def _length(response: httpx.Response) -> int | None:
    length = response.headers.get("content-length", "")
    return int(length) if length.isdigit() else None


def _check_download(response: httpx.Response, shown: str, offset: int) -> tuple[int, int | None]:
    """(start, total) of an acceptable answer to a GET from `offset`; raises otherwise."""
    if response.status_code != 206 or not offset:
        _check_status(response, shown)
        return 0, None
    match = _CONTENT_RANGE.match(response.headers.get("content-range", "").strip())
    if match is None or int(match[1]) != offset:
        raise SourceUnavailable(
            f"{shown} answered a range from byte {offset} with Content-Range "
            f"{response.headers.get('content-range')!r}"
        )
    return offset, None if match[3] == "*" else int(match[3])


def _check_status(response: httpx.Response, shown: str) -> None:
    status = response.status_code
    if status == 200:
        return
    if status in REFUSED_STATUSES:
        raise UrlRefused(f"{shown} answered {status}: the URL expired or no longer grants the file")
    if status in MISSING_STATUSES:
        raise SourceMissing(f"{shown} answered {status}: the file is gone")
    raise SourceUnavailable(f"{shown} answered {status}")


def source_size(client: httpx.Client, url: str) -> int:
    """The source's Content-Length, from a HEAD request (for a server-side copy)."""
    shown = redact_url(url)
    try:
        response = client.head(url)
    except httpx.HTTPError as exc:
        raise SourceUnavailable(f"cannot reach {shown}: {type(exc).__name__}: {scrub(str(exc))}") from None
    _check_status(response, shown)
    length = response.headers.get("content-length", "")
    if not length.isdigit():
        raise SourceUnavailable(f"{shown} gave no Content-Length")
    return int(length)
