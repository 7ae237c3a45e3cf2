"""Download links over HTTP: ``GET /files/<token>`` serves a local file a link names, and the status
page's download button, ``POST /links/<transfer id>``, answers 303 to a fresh link.

``/files/`` needs no login: the token is the credential (`worker.links.served`). It streams the file
with Starlette's FileResponse: ``Range`` (206, several ranges as multipart/byteranges, 416 past the
end), ``HEAD``, ``Content-Disposition: attachment``. A token that is not valid, for whatever reason,
gets the same 403 and the same words; a valid one whose file is gone gets 404. Nothing but a file of a
local storage of this configuration, under its directory, can be reached.

``/links/`` is the status page's: behind ARCHIVER_STATUS_TOKEN exactly like it (404 when the page is
off, 401 without the token). A browser resends basic-auth credentials to this origin whoever's page
sent the form, so a request a browser marks as coming from another site (``Sec-Fetch-Site``, else an
``Origin`` that is not this host or ``public_url``) is refused: another site cannot have the link
made. The link lasts `DEFAULT_TTL`, or ``max_link_ttl`` when that is shorter. A client answers 303 to
the link. A browser's form (``Accept: text/html``) gets a small page that opens the link instead: the
status page's ``form-action 'self'`` also covers where a form's answer redirects, and Chromium refuses
a 303 to the store's origin (checked); the new page is a plain navigation.
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlsplit

import redis
import structlog
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response

from config import Settings
from config.logging import scrub
from worker.clock import rfc3339
from worker.edge.web import auth, openapi, paths
from worker.errors import LinkUnavailable, StorageRefused, StorageUnavailable
from worker.ledger.store import Ledger
from worker.links import DEFAULT_TTL, Link, LinkMaker

NOT_VALID = "this link is not valid, or has expired: ask for a new one\n"
GONE = "the file this link named is no longer there\n"
_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}
FILE_HEADERS = {**_NO_STORE, "Content-Security-Policy": "default-src 'none'; sandbox"}
PAGE_HEADERS = {**_NO_STORE, "Content-Security-Policy": "default-src 'none'; form-action 'none'; "
                                                         "frame-ancestors 'none'; base-uri 'none'"}
_SAME_SITE = frozenset({"same-origin", "none"})  # Sec-Fetch-Site of the page's own forms, or a typed URL

log = structlog.get_logger(__name__)


def add_files(app: FastAPI, maker: LinkMaker) -> None:
    """GET and HEAD /files/{token}: always there (the token is the credential)."""

    def served_file(token: str) -> Response:
        try:
            found = maker.served_file(token)
        except FileNotFoundError:
            return PlainTextResponse(GONE, status_code=404, headers=_NO_STORE)
        except (redis.RedisError, StorageUnavailable):
            return PlainTextResponse("unavailable for now: try again later\n", status_code=503, headers=_NO_STORE)
        if found is None:
            return PlainTextResponse(NOT_VALID, status_code=403, headers=_NO_STORE)
        return FileResponse(found.path, media_type=found.content_type or None, filename=found.filename,
                            headers=FILE_HEADERS)  # Range, HEAD, 416: Starlette's

    for method in ("get", "head"):  # one operation each (one route with both methods gets a duplicate operation id)
        getattr(app, method)(paths.FILES + "/{token}", response_class=Response, responses=openapi.FILES,
                             operation_id=f"served_file_{method}")(served_file)


def cross_site(request: Request, public_url: str | None) -> bool:
    """Whether a browser says this request comes from another site's page (`Sec-Fetch-Site`; browsers
    without it: an `Origin` that is neither this host nor `public_url`'s). Clients that send neither
    (curl, scripts) are not browsers: their token was sent on purpose."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site not in _SAME_SITE
    origin = request.headers.get("origin")
    if origin is None:
        return False
    allowed = {f"{request.url.scheme}://{request.headers.get('host', '')}"}
    if public_url:
        parts = urlsplit(public_url)
        allowed.add(f"{parts.scheme}://{parts.netloc}")
    return origin not in allowed


def add_links(app: FastAPI, settings: Settings, ledger: Ledger, maker: LinkMaker) -> None:
    """POST /links/{transfer_id}: behind ARCHIVER_STATUS_TOKEN, like the status page."""
    secret = settings.env.archiver_status_token
    token = secret.get_secret_value() if secret is not None else ""
    ttl = min(DEFAULT_TTL, settings.archive.max_link_ttl)

    @app.post(paths.LINKS + "/{transfer_id}", response_class=Response, responses=openapi.LINKS, name="fresh_link")
    async def fresh_link(request: Request, transfer_id: str) -> Response:
        if not token:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        header = request.headers.get("authorization")
        if not auth.authorized(header, token):
            return JSONResponse({"error": auth.status_refusal(header)}, status_code=401, headers=auth.STATUS_CHALLENGE)
        if cross_site(request, settings.archive.public_url):
            return JSONResponse({"error": "refused: this request comes from another site's page"}, status_code=403)
        return await run_in_threadpool(_fresh_link, transfer_id, "text/html" in request.headers.get("accept", ""))

    def _fresh_link(transfer_id: str, browser: bool) -> Response:
        try:
            transfer = ledger.get(transfer_id)
            if transfer is None:
                return JSONResponse({"error": f"no transfer {transfer_id!r}"}, status_code=404)
            link = maker.link(transfer, ttl)
        except LinkUnavailable as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        except StorageRefused as exc:
            return JSONResponse({"error": str(exc)}, status_code=502)
        except (StorageUnavailable, redis.RedisError) as exc:
            return JSONResponse({"error": scrub(str(exc))}, status_code=503)
        log.info("link_given", transfer_id=transfer_id, via="status_page")
        if browser:
            return HTMLResponse(link_page(link), headers=PAGE_HEADERS)
        return RedirectResponse(link.url, status_code=303, headers=_NO_STORE)


def link_page(link: Link) -> str:
    """A page that opens `link` at once (meta refresh: a navigation, which no form-action governs) and
    shows it, with its expiry."""
    url, name = escape(link.url), escape(link.key.rsplit("/", 1)[-1])
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" '
            f'content="0; url={url}"><title>download {name}</title></head>\n<body><p>Downloading '
            f'<a href="{url}">{name}</a>.</p><p>This link works until {escape(rfc3339(link.expires_at) or "")} for '
            "anyone who has it.</p></body></html>\n")
