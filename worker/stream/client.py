"""Stream's server-side REST API, the parts the archiver needs (``shared/stream-api.md`` §3–4).

Auth as Stream's SDKs do it: ``?api_key=`` on every request, a server JWT (HS256 with the API
secret — while a secret is rotated, the first of STREAM_API_SECRET's, which the settings give as
``stream_api_secret`` — ``{"server": true}``) in ``Authorization`` with no ``Bearer`` prefix, ``stream-auth-type:
jwt``, and an identifying client header. Every request first waits for its endpoint's share of
Stream's rate limits (``worker.stream.limits``: one budget in Redis for every process). Transport
errors and 5xx are retried with backoff; a 429 waits as ``Retry-After`` / ``X-RateLimit-Reset`` say
(every process then waits) and is retried for as long as it takes: a run that waits is slow, never
failed. Every error carries Stream's ``code`` and ``message``; when Stream's API cannot be reached
at all, the error says so in the words every command uses: "cannot reach Stream's API at <base
URL>: <cause>". Every answer is counted by endpoint and outcome (``worker.monitoring.stats``).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import jwt
import structlog

from worker.errors import StreamApiError, StreamRefused, StreamUnavailable
from worker.files import Kind, listing
from worker.monitoring.stats import Stats
from worker.retry import backoff
from worker.stream.limits import MAX_HOLD, Budget, RateHeaders, Unmetered, endpoint_of, rate_headers, retry_wait

log = structlog.get_logger(__name__)
RETRY_FIRST, RETRY_CAP = 0.5, 8.0  # seconds: the wait after a failed try (then doubled, jittered)
RATE_LIMITED_CAP = 30.0  # seconds: a 429 with no hint waits as a failure does, up to this
T = TypeVar("T")


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
    """A small synchronous client; one per process (it keeps HTTP connections open).

    `budget` paces requests by Stream's rate limits (default: unmetered, only 429s slow it down);
    `stats` counts answers and waits for /metrics (default: not counted)."""

    def __init__(self, base_url: str, api_key: str, api_secret: str, *, timeout: float = 10.0,
                 attempts: int = 4, sleep: Callable[[float], None] = time.sleep, budget: Budget | None = None,
                 stats: Stats | None = None) -> None:
        self._attempts, self._sleep = attempts, sleep
        self._budget: Budget = budget or Unmetered()
        self._stats = stats
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
        section = listing(kind)
        body = self.request("GET", f"{_call_path(call_cid)}/{section}")
        return [item for item in body.get(section) or [] if isinstance(item, dict)]

    def delete_file(self, call_cid: str, kind: Kind, session_id: str, filename: str) -> None:
        """DeleteRecording or DeleteTranscription (files on Stream's own storage only)."""
        section = listing(kind)
        path = f"{_call_path(call_cid)}/{quote(session_id, safe='')}/{section}/{quote(filename, safe='')}"
        self.request("DELETE", path)

    def get_call(self, call_type: str, call_id: str) -> dict[str, Any] | None:
        """GetCall's ``call`` object, or None when Stream has no such call."""
        path = _call_path(f"{call_type}:{call_id}")
        try:
            body = self.request("GET", path)
        except StreamRefused as exc:
            if exc.gone:
                return None
            raise
        call = body.get("call")
        return call if isinstance(call, dict) else None

    def file_from_api(self, call_cid: str, section: str, session_id: str) -> bytes:
        """The body of a file Stream's API serves itself (GetCallReport: ``section`` "report"), as
        Stream sent it; StreamUnavailable when it is not a JSON object. A session with no such file
        is a StreamRefused whose `gone` is true (404, or 400 with code 16)."""
        path = f"{_call_path(call_cid)}/{quote(section, safe='')}"
        return self._call("GET", path, _json_bytes, params={"session_id": session_id})

    def request(self, method: str, path: str, json: dict[str, Any] | None = None) -> dict[str, Any]:
        """One API call; the decoded JSON body. Waits for the budget and out 429s as long as it
        takes; transport errors and 5xx get `attempts` tries. Raises StreamRefused / StreamUnavailable."""
        return self._call(method, path, _json, json=json)

    def _call(self, method: str, path: str, decode: Callable[[httpx.Response], T], *,
              json: dict[str, Any] | None = None, params: dict[str, str] | None = None) -> T:
        """`request`, with the successful answer read by `decode` (which may raise StreamUnavailable)."""
        endpoint = endpoint_of(method, path)
        failures = limited = 0
        while True:
            self._wait_for_budget(endpoint)
            try:
                response = self._http.request(method, path, json=json, params=params)
            except httpx.HTTPError as exc:
                self._budget.answered(endpoint, None, learn=False)
                self._count(endpoint, "unreachable")
                failure = StreamUnavailable(
                    f"cannot reach Stream's API at {self.base_url}: {unreachable_cause(exc)} ({method} {path})")
            else:
                rate = rate_headers(response.headers)
                if response.status_code == 429:
                    limited += 1
                    self._rate_limited(endpoint, _error(method, path, response), response, rate, limited)
                    continue  # however many in a row: only an `unrecoverable` one raises
                self._budget.answered(endpoint, rate, learn=response.status_code < 500)
                try:
                    if response.status_code < 400:
                        body = decode(response)
                        self._count(endpoint, "ok")
                        return body
                    raise _error(method, path, response)
                except StreamApiError as error:
                    self._count(endpoint, _outcome(error))
                    if not isinstance(error, StreamUnavailable) or error.status < 400:
                        raise
                    failure = error
            failures += 1
            if failures >= self._attempts:
                raise failure
            wait = backoff(failures, RETRY_FIRST, RETRY_CAP)
            log.warning("stream_api_retry", method=method, path=path, error=str(failure), wait_s=round(wait, 2))
            self._sleep(wait)

    def _wait_for_budget(self, endpoint: str) -> None:
        """Sleep until the shared budget lets a request to `endpoint` go (it is then counted)."""
        waited = 0.0
        while (wait := self._budget.wait(endpoint)) > 0:
            self._sleep(wait)
            waited += wait
        if waited:
            self._waited(endpoint, waited)

    def _rate_limited(self, endpoint: str, error: StreamApiError, response: httpx.Response,
                      rate: RateHeaders | None, limited: int) -> None:
        """A 429: every process holds off until Stream's reset (or, with no hint, a backoff that
        grows with the 429s in a row); this one sleeps it out. Never counted as a success. Raises
        the error when Stream marked it `unrecoverable`."""
        self._count(endpoint, "rate_limited")
        if isinstance(error, StreamRefused):  # marked `unrecoverable`: retrying will not help
            self._budget.answered(endpoint, rate, learn=False)
            raise error
        hinted = retry_wait(response.headers)
        wait = min(MAX_HOLD, hinted if hinted else backoff(limited, RETRY_FIRST, RATE_LIMITED_CAP))
        self._budget.answered(endpoint, rate, hold=wait, learn=False)
        log.warning("stream_api_rate_limited", endpoint=endpoint, error=str(error), wait_s=round(wait, 2),
                    in_a_row=limited)
        self._sleep(wait)
        self._waited(endpoint, wait)

    def _count(self, endpoint: str, outcome: str) -> None:
        if self._stats is not None:
            self._stats.stream_request(endpoint, outcome)

    def _waited(self, endpoint: str, seconds: float) -> None:
        if self._stats is not None:
            self._stats.stream_waited(endpoint, seconds)


def _outcome(error: StreamApiError) -> str:
    """The metrics outcome of an error answer (see worker.monitoring.stats.STREAM_OUTCOMES)."""
    if error.gone:
        return "gone"
    if isinstance(error, StreamUnavailable):
        return "error"
    return "refused"


def _call_path(call_cid: str) -> str:
    call_type, _, call_id = call_cid.partition(":")
    return f"/api/v2/video/call/{quote(call_type, safe='')}/{quote(call_id, safe='')}"


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise StreamUnavailable(f"Stream API answered {response.status_code} with a body that is not JSON") from None
    return body if isinstance(body, dict) else {}


def _json_bytes(response: httpx.Response) -> bytes:
    """The body as sent, once it is known to be a JSON object."""
    _json(response)
    if not response.content.lstrip().startswith(b"{"):
        raise StreamUnavailable(f"Stream API answered {response.status_code} with JSON that is not an object")
    return response.content


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
