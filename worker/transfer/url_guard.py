"""Where a download may go: a forged or hostile URL must not reach inside the network. Checked twice:

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
for plain http). A refusal is DownloadRefused. Environment proxies are not used for downloads
(`worker.transfer.download`): the guard must see the address connected to.

One more way in, for one file at a time: a one-file permission in the ledger (`worker.intake.permits`,
written only by ``archiver try`` for the sample it serves itself). A well-formed http(s) URL that
`download_hosts` refuses is accepted when `permits` holds a permission for exactly that URL
(scheme, host, port and path; the query aside), and then only that connection may go to a
loopback or private address. Nothing in a payload creates a permission; every other URL, and
every redirect, is checked as above.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from fnmatch import fnmatchcase

import httpx

from config.logging import redact_url
from worker.errors import DownloadRefused

_HOSTNAME = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)(\.(?!-)[a-z0-9_-]{1,63}(?<!-))*$")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
DEFAULT_PORTS = {"http": 80, "https": 443}
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
    if parsed.scheme not in DEFAULT_PORTS:
        return "is not an http(s) URL"
    if parsed.userinfo:
        return "carries a user name or password"
    host = parsed.raw_host.decode("ascii").lower()
    port = DEFAULT_PORTS[parsed.scheme] if parsed.port is None else parsed.port
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
