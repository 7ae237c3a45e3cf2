"""One-file download permissions: how ``archiver try`` lets the worker fetch the sample it serves itself.

``archiver try`` serves its sample files from a local port (loopback, or a private address), which
the download guard refuses. Before it sends its webhooks it writes, for each sample file, a
permission to the ledger: the file's exact URL without its query (scheme, host, port and path) →
the trial's ``call_cid``, for a limited time (TTL), and it removes them when it ends. Two readers:

* the download guard (`worker.transfer.url_guard.check_url`, through `LedgerPermits`) accepts a URL outside
  ``download_hosts`` only when a permission exists for exactly that URL, and then lets that one
  connection go to a loopback or private address;
* routing (`worker.intake.resolve.resolve_file`) routes a waiting file by call type and default at once,
  without asking Stream for its call, when its URL holds a permission naming the file's own
  ``call_cid``: the trial's call does not exist at Stream, and its lookup could retry for up to
  ``call_lookup_timeout``.

Only ``archiver try`` writes permissions. A payload can name any URL and any call, but it cannot
create a permission, so it never widens what the worker may fetch nor skips a real call's lookup.
"""

from __future__ import annotations

from typing import cast

import httpx

from worker.ledger.store import Ledger

_DEFAULT_PORTS = {"http": 80, "https": 443}


def permit_url(url: str) -> str | None:
    """The form a permission is keyed by: ``scheme://host:port/path`` (port always given, no
    query, no fragment), as the download client parses it; None for a URL that is not http(s)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return None
    if parsed.scheme not in _DEFAULT_PORTS or not parsed.raw_host:
        return None
    host = parsed.raw_host.decode("ascii").lower()
    host = f"[{host}]" if ":" in host else host
    port = parsed.port or _DEFAULT_PORTS[parsed.scheme]
    path = parsed.raw_path.decode("ascii").split("?", 1)[0]
    return f"{parsed.scheme}://{host}:{port}{path}"


def _key(ledger: Ledger, url: str) -> str | None:
    exact = permit_url(url)
    return None if exact is None else ledger.keys.trial_permit(exact)


def grant(ledger: Ledger, url: str, call_cid: str, ttl_ms: int) -> None:
    """Allow the worker to download exactly `url` (any query) for `ttl_ms`, for the trial `call_cid`.
    Raises ValueError for a URL that is not http(s), redis errors."""
    key = _key(ledger, url)
    if key is None:
        raise ValueError("a download permission needs an http(s) URL")
    ledger.redis.set(key, call_cid, px=max(1, ttl_ms))


def revoke(ledger: Ledger, urls: list[str]) -> None:
    """Remove the permissions for `urls` (missing ones are fine)."""
    keys = [k for k in (_key(ledger, url) for url in urls) if k is not None]
    if keys:
        ledger.redis.delete(*keys)


def permitted_call(ledger: Ledger, url: str) -> str | None:
    """The trial call a permission for exactly `url` was granted for, or None when there is none."""
    key = _key(ledger, url)
    return None if key is None else cast(str | None, ledger.redis.get(key))


class LedgerPermits:
    """The download guard's question (`worker.transfer.url_guard.Permits`): is there a permission for this URL?"""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def __call__(self, url: str) -> bool:
        return permitted_call(self._ledger, url) is not None
