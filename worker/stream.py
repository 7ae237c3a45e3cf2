"""Stream's server-side REST API, the parts the archiver needs (``shared/stream-api.md`` §3–4).

Auth as Stream's SDKs do it: ``?api_key=`` on every request, a server JWT (HS256 with the API
secret — while a secret is rotated, the first of STREAM_API_SECRET's, which the settings give as
``stream_api_secret`` — ``{"server": true}``) in ``Authorization`` with no ``Bearer`` prefix, ``stream-auth-type:
jwt``, and an identifying client header. Transport errors and 5xx are retried with backoff; a 429
waits as ``Retry-After`` / ``X-RateLimit-Reset`` say (within limits) and goes on. Every error
carries Stream's ``code`` and ``message``; when Stream's API cannot be reached at all, the error
says so in the words every command uses: "cannot reach Stream's API at <base URL>: <cause>".
"""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import structlog

from worker.errors import StreamRefused, StreamUnavailable
from worker.files import Kind

log = structlog.get_logger(__name__)
MAX_RATE_LIMIT_WAIT = 60.0


def _client_version() -> str:
    try:
        return version("stream-archiver")
    except PackageNotFoundError:
        return "dev"


def server_token(api_secret: str) -> str:
    """The server-side JWT Stream expects (no expiry, as the SDKs sign it)."""
    with warnings.catch_warnings():
        # PyJWT warns on every token signed with a secret under 32 bytes, which the user cannot act
        # on (Stream issues the secret): the CLI says it once, at start, as advice instead.
        warnings.filterwarnings("ignore", message="The HMAC key is", category=UserWarning)
        return jwt.encode({"server": True}, api_secret, algorithm="HS256")


# Why a request got no answer, in a few words (the first needle found in the error's text).
_CAUSES = (
    ("connection refused", "connection refused"),
    ("name or service not known", "host name not found (DNS)"),
    ("nodename nor servname", "host name not found (DNS)"),
    ("name resolution", "host name not found (DNS)"),
    ("getaddrinfo failed", "host name not found (DNS)"),
    ("certificate verify failed", "its TLS certificate is not trusted"),
    ("network is unreachable", "network unreachable"),
    ("no route to host", "no route to host"),
    ("connection reset", "connection reset"),
)


def unreachable_cause(exc: httpx.HTTPError) -> str:
    """Why a request to Stream's API got no answer: "connection refused", "host name not found
    (DNS)", "timed out connecting"… (the exception's own text when none of these fits)."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "timed out connecting"
    if isinstance(exc, httpx.TimeoutException):
        return "no answer in time"
    text = str(exc)
    for needle, cause in _CAUSES:
        if needle in text.lower():
            return cause
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class StreamClient:
    """A small synchronous client; one per process (it keeps HTTP connections open)."""

    def __init__(self, base_url: str, api_key: str, api_secret: str, *, timeout: float = 10.0,
                 attempts: int = 4, sleep: Callable[[float], None] = time.sleep) -> None:
        self._attempts, self._sleep = attempts, sleep
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            params={"api_key": api_key},
            headers={
                "Authorization": server_token(api_secret),
                "stream-auth-type": "jwt",
                "X-Stream-Client": f"stream-archiver-{_client_version()}",
                "Accept-Encoding": "gzip",
            },
        )

    def close(self) -> None:
        self._http.close()

    def query_calls(self, filter_conditions: dict[str, Any], *, sort: list[dict[str, Any]] | None = None,
                    limit: int = 100, cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of QueryCalls: the ``call`` objects and the cursor of the next page (None at the end)."""
        body: dict[str, Any] = {"filter_conditions": filter_conditions, "limit": min(max(limit, 1), 100)}
        if sort:
            body["sort"] = sort
        if cursor:
            body["next"] = cursor
        page = self.request("POST", "/api/v2/video/calls", json=body)
        calls = [entry["call"] for entry in page.get("calls") or [] if isinstance(entry, dict)
                 and isinstance(entry.get("call"), dict)]
        next_cursor = page.get("next")
        return calls, next_cursor if isinstance(next_cursor, str) and next_cursor else None

    def list_files(self, call_cid: str, kind: Kind) -> list[dict[str, Any]]:
        """ListRecordings or ListTranscriptions: every stored file of the call, with fresh signed URLs."""
        section = "recordings" if kind == "recording" else "transcriptions"
        body = self.request("GET", f"{_call_path(call_cid)}/{section}")
        return [item for item in body.get(section) or [] if isinstance(item, dict)]

    def delete_file(self, call_cid: str, kind: Kind, session_id: str, filename: str) -> None:
        """DeleteRecording or DeleteTranscription (files on Stream's own storage only)."""
        section = "recordings" if kind == "recording" else "transcriptions"
        path = f"{_call_path(call_cid)}/{quote(session_id, safe='')}/{section}/{quote(filename, safe='')}"
        self.request("DELETE", path)

    def get_call(self, call_type: str, call_id: str) -> dict[str, Any] | None:
        """GetCall's ``call`` object, or None when Stream has no such call."""
        path = _call_path(f"{call_type}:{call_id}")
        try:
            body = self.request("GET", path)
        except StreamRefused as exc:
            if exc.status == 404:
                return None
            raise
        call = body.get("call")
        return call if isinstance(call, dict) else None

    def request(self, method: str, path: str, json: dict[str, Any] | None = None) -> dict[str, Any]:
        """One API call with retries; the decoded JSON body. Raises StreamRefused / StreamUnavailable."""
        for attempt in range(1, self._attempts + 1):
            try:
                response = self._http.request(method, path, json=json)
            except httpx.HTTPError as exc:
                failure: StreamUnavailable = StreamUnavailable(
                    f"cannot reach Stream's API at {self.base_url}: {unreachable_cause(exc)} ({method} {path})")
                wait = self._backoff(attempt)
            else:
                if response.status_code < 400:
                    return _json(response)
                failure_or_refusal = _error(method, path, response)
                if isinstance(failure_or_refusal, StreamRefused):
                    raise failure_or_refusal
                failure = failure_or_refusal
                wait = _rate_limit_wait(response) if response.status_code == 429 else self._backoff(attempt)
            if attempt == self._attempts:
                raise failure
            wait = min(wait, MAX_RATE_LIMIT_WAIT)
            log.warning("stream_api_retry", method=method, path=path, error=str(failure), wait_s=round(wait, 2))
            self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _backoff(attempt: int) -> float:
        return float(min(8.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))


def _call_path(call_cid: str) -> str:
    call_type, _, call_id = call_cid.partition(":")
    return f"/api/v2/video/call/{quote(call_type, safe='')}/{quote(call_id, safe='')}"


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise StreamUnavailable(f"Stream API answered {response.status_code} with a body that is not JSON") from None
    return body if isinstance(body, dict) else {}


def _error(method: str, path: str, response: httpx.Response) -> StreamRefused | StreamUnavailable:
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    code, message = body.get("code"), body.get("message") or response.reason_phrase
    text = f"Stream API {method} {path} answered {response.status_code} (code {code}): {message}"
    transient = response.status_code in (408, 429) or response.status_code >= 500
    kind = StreamUnavailable if transient and not body.get("unrecoverable") else StreamRefused
    return kind(text, status=response.status_code, code=code if isinstance(code, int) else None)


def _rate_limit_wait(response: httpx.Response) -> float:
    """Seconds to wait after a 429, from Retry-After or X-RateLimit-Reset (unix seconds)."""
    retry_after = response.headers.get("retry-after", "")
    if retry_after.strip().isdigit():
        return float(retry_after)
    reset = response.headers.get("x-ratelimit-reset", "")
    if reset.strip().isdigit():
        return max(0.0, float(reset) - time.time()) + 0.1
    return 1.0
