"""The fake Stream REST API (``/api/v2/video/...``) with Stream's server-side auth and APIError bodies.

Auth (stream-api.md §3): ``?api_key=KEY``, ``Authorization: <JWT>`` without "Bearer", HS256 with the
API secret (PyJWT verifies; ``{}`` and ``{"server": true}`` claims both pass), ``stream-auth-type: jwt``.
Error codes are Stream's (2 api key, 4 input, 5 auth, 9 rate limit, 16 not found, 40 token expired,
43 bad token signature); the exact messages are close paraphrases, not verbatim copies.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import jwt

from tests.fakestream.callresponse import call_state
from tests.fakestream.httpbase import QuietHandler
from tests.fakestream.models import FileKind, StoredFile, TimestampFormat, format_timestamp
from tests.fakestream.query import QueryError, query_calls
from tests.fakestream.ratelimit import RateLimits, RetryAfter, Verdict, retry_after_value
from tests.fakestream.store import ApiAnswer, ApiRequest, Store

_CALL = r"^/api/v2/video/call/(?P<type>[^/]+)/(?P<id>[^/]+)"
# (method, path pattern, handler, Stream's operation name: the endpoint rate limits are counted by)
_ROUTES: list[tuple[str, re.Pattern[str], str, str]] = [
    ("GET", re.compile(_CALL + r"/recordings$"), "list_recordings", "ListRecordings"),
    ("GET", re.compile(_CALL + r"/transcriptions$"), "list_transcriptions", "ListTranscriptions"),
    ("GET", re.compile(_CALL + r"/report$"), "get_call_report", "GetCallReport"),
    ("GET", re.compile(_CALL + r"$"), "get_call", "GetCall"),
    ("POST", re.compile(r"^/api/v2/video/calls$"), "query_calls", "QueryCalls"),
    ("DELETE", re.compile(_CALL + r"/(?P<session>[^/]*)/recordings/(?P<filename>[^/]+)$"), "delete_recording",
     "DeleteRecording"),
    ("DELETE", re.compile(_CALL + r"/(?P<session>[^/]*)/transcriptions/(?P<filename>[^/]+)$"),
     "delete_transcription", "DeleteTranscription"),
]
_RETRYABLE = {408, 429, 500, 502, 503, 504}


class ApiFailure(Exception):
    """Raised by endpoint code to answer with an APIError body (and `headers`, if any)."""

    def __init__(self, status: int, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


@dataclass
class _Fault:
    path_contains: str
    status: int
    headers: dict[str, str]
    remaining: int


class ApiFaults:
    """Queued one-shot error answers for REST paths containing a substring (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []

    def add(self, path_contains: str, status: int, count: int, headers: dict[str, str] | None = None) -> None:
        """The next `count` matching requests answer `status`, with `headers` added to the answer."""
        if count < 1:
            raise ValueError("count must be >= 1")
        with self._lock:
            self._faults.append(_Fault(path_contains, status, dict(headers or {}), count))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, path: str) -> ApiFailure | None:
        """Consume the oldest fault matching `path`, as the failure to answer with."""
        with self._lock:
            for fault in self._faults:
                if fault.path_contains in path:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    code = 9 if fault.status == 429 else -1
                    return ApiFailure(fault.status, code, f"injected failure {fault.status}", fault.headers)
        return None


@dataclass
class ApiConfig:
    """What the API needs from FakeStream (credentials, signing, output format)."""

    api_key: str
    api_secret: str
    timestamp_format: Callable[[], TimestampFormat]
    sign: Callable[[StoredFile], str]  # fresh signed URL for a file


def check_auth(config: ApiConfig, query: dict[str, str], headers: dict[str, str]) -> None:
    """Raise ApiFailure(401) unless the request carries Stream server-side credentials."""
    lower = {k.lower(): v for k, v in headers.items()}
    if not query.get("api_key"):
        raise ApiFailure(401, 2, "api_key not found")
    if query["api_key"] != config.api_key:
        raise ApiFailure(401, 2, "api_key not valid")
    if lower.get("stream-auth-type") != "jwt":
        raise ApiFailure(401, 5, "Stream-Auth-Type header is missing or not 'jwt'")
    token = lower.get("authorization", "")
    if not token:
        raise ApiFailure(401, 5, "Authorization header is missing")
    try:
        jwt.decode(token, config.api_secret, algorithms=["HS256"], options={"require": []})
    except jwt.ExpiredSignatureError as err:
        raise ApiFailure(401, 40, "JWTAuth error: token has expired") from err
    except jwt.InvalidSignatureError as err:
        raise ApiFailure(
            401,
            43,
            f"JWTAuth error: signature is not valid. Make sure the token is created using the "
            f'secret for API key "{config.api_key}"',
        ) from err
    except jwt.PyJWTError as err:
        raise ApiFailure(401, 5, f"JWTAuth error: token is malformed: {type(err).__name__}") from err


def error_body(status: int, code: int, message: str, duration: str) -> dict[str, Any]:
    """Stream's APIError JSON."""
    return {
        "code": code,
        "message": message,
        "exception_fields": {},
        "StatusCode": status,
        "duration": duration,
        "more_info": "",
        "details": [],
        "unrecoverable": status not in _RETRYABLE,
    }


class Api:
    """Endpoint implementations over the shared Store."""

    def __init__(self, store: Store, config: ApiConfig) -> None:
        self.store = store
        self.config = config
        self.faults = ApiFaults()
        self.limits = RateLimits()
        self.rate_limit_headers = True  # False: answers carry no X-RateLimit-* (only 429s say anything)
        self.retry_after: RetryAfter = "seconds"  # the Retry-After of a 429 over the limits
        self.missing_status = 404  # or 400: the spec lists only 200/400/429; "does not exist" is code 16 either way

    def _missing(self, message: str) -> ApiFailure:
        """Stream's "does not exist" error (code 16), as 404 or as 400 (`missing_status`)."""
        return ApiFailure(self.missing_status, 16, message)

    def _file_json(self, stored: StoredFile) -> dict[str, Any]:
        """CallRecording / CallTranscription JSON with a fresh signed URL (None fields omitted)."""
        fmt = self.config.timestamp_format()
        body: dict[str, Any] = {
            "filename": stored.filename,
            "url": self.config.sign(stored),
            "start_time": format_timestamp(stored.start_time, fmt),
            "end_time": format_timestamp(stored.end_time, fmt),
        }
        if stored.session_id is not None:
            body["session_id"] = stored.session_id
        if stored.kind == "recording" and stored.recording_type is not None:
            body["recording_type"] = stored.recording_type
        return body

    def _require_call(self, params: dict[str, str]) -> str:
        """The cid named by the path; ApiFailure(404, 16) when the call does not exist."""
        cid = f"{params['type']}:{params['id']}"
        if self.store.get_call(cid) is None:
            raise self._missing(f"Can't find call with id {cid}")
        return cid

    def list_recordings(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        """ListRecordings: every live recording of the call."""
        cid = self._require_call(params)
        return {"recordings": [self._file_json(f) for f in self.store.live_files(cid, "recording")]}

    def list_transcriptions(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        """ListTranscriptions: every live transcription of the call."""
        cid = self._require_call(params)
        return {"transcriptions": [self._file_json(f) for f in self.store.live_files(cid, "transcription")]}

    def get_call_report(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        """GetCallReport: the stats report of ``?session_id=`` (default: the call's current session);
        "does not exist" (code 16) when the session has none."""
        call = self.store.get_call(self._require_call(params))
        assert call is not None
        session = params.get("session_id") or call.session_id
        report = self.store.report(call.cid, session)
        if report is None:
            raise self._missing(f"no report for session {session} of call {call.cid}")
        return report.response(call, self.config.timestamp_format())

    def get_call(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        """GetCall."""
        call = self.store.get_call(self._require_call(params))
        assert call is not None
        return {**call_state(call, self.config.timestamp_format()), "blocked_users": []}

    def query_calls(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        """QueryCalls with filters, sort and cursors (see query.py)."""
        try:
            page = query_calls(self.store.all_calls(), body)
        except QueryError as err:
            raise ApiFailure(400, 4, f'QueryCalls failed with error: "{err}"') from err
        fmt = self.config.timestamp_format()
        result: dict[str, Any] = {"calls": [call_state(c, fmt) for c in page.calls]}
        if page.next:
            result["next"] = page.next
        if page.prev:
            result["prev"] = page.prev
        return result

    def _delete(self, kind: FileKind, params: dict[str, str]) -> dict[str, Any]:
        """Delete one file addressed by (call, session, filename); 404 when absent or session differs."""
        cid = f"{params['type']}:{params['id']}"
        stored = self.store.find_live(cid, kind, params["filename"])
        if stored is None or stored.session_id not in (None, params["session"]):
            raise self._missing(f"{kind} {params['filename']} not found")
        self.store.delete(stored)
        return {}

    def delete_recording(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        """DeleteRecording."""
        return self._delete("recording", params)

    def delete_transcription(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        """DeleteTranscription."""
        return self._delete("transcription", params)

    @staticmethod
    def route(method: str, path: str) -> tuple[str, str, dict[str, str]] | None:
        """(handler name, operation name, path parameters) of a request, or None when no route fits."""
        for route_method, pattern, name, operation in _ROUTES:
            match = pattern.match(path)
            if match is not None and route_method == method:
                return name, operation, {k: unquote(v) for k, v in match.groupdict().items()}
        return None

    def admit(self, method: str, path: str) -> Verdict:
        """Count the request against its endpoint's limits (unknown routes share one endpoint)."""
        found = self.route(method, path)
        return self.limits.admit(found[1] if found else "unknown")

    def dispatch(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], raw_body: bytes
    ) -> dict[str, Any]:
        """Authenticate, apply injected faults, route and run one request; raise ApiFailure on error."""
        check_auth(self.config, query, headers)
        failure = self.faults.take(path)
        if failure is not None:
            raise failure
        found = self.route(method, path)
        if found is None:
            raise ApiFailure(404, 16, f"endpoint {method} {path} not found")
        name, _, params = found
        params = {**query, **params}  # the path's parameters, and the query's beside them
        return getattr(self, name)(params, _json_body(raw_body))  # type: ignore[no-any-return]


def _json_body(raw: bytes) -> dict[str, Any]:
    """Decode a JSON object body (empty → {}); ApiFailure(400, 4) when it is not one."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as err:
        raise ApiFailure(400, 4, "invalid JSON request body") from err
    if not isinstance(body, dict):
        raise ApiFailure(400, 4, "request body must be a JSON object")
    return body


class ApiHandler(QuietHandler):
    """HTTP front of :class:`Api`: logs the request, runs it, writes JSON with ``duration``."""

    api: Api  # set by the handler factory in server.py

    def do_GET(self) -> None:
        """Handle GET."""
        self._handle()

    def do_POST(self) -> None:
        """Handle POST."""
        self._handle()

    def do_DELETE(self) -> None:
        """Handle DELETE."""
        self._handle()

    def _handle(self) -> None:
        """Count the request against its endpoint's limits, run it, and send either the success
        body or an APIError; every answer carries the X-RateLimit-* headers (unless turned off)."""
        started = time.perf_counter()
        split = urlsplit(self.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        headers, raw = self.request_headers(), self.read_body()
        self.api.store.log_api(ApiRequest(self.command, split.path, query, headers, raw))
        verdict = self.api.admit(self.command, split.path)
        extra: dict[str, str] = {}
        try:
            if not verdict.allowed:
                raise ApiFailure(429, 9, "Too many requests, check response headers for more information.")
            status, body = 200, self.api.dispatch(self.command, split.path, query, headers, raw)
        except ApiFailure as failure:
            status, body = failure.status, error_body(failure.status, failure.code, failure.message, "")
            extra.update(failure.headers)
        body["duration"] = f"{(time.perf_counter() - started) * 1000:.2f}ms"
        if self.api.rate_limit_headers:
            extra.setdefault("X-RateLimit-Limit", str(verdict.limit))
            extra.setdefault("X-RateLimit-Remaining", str(verdict.remaining))
            extra.setdefault("X-RateLimit-Reset", str(verdict.reset))
        retry_after = retry_after_value(self.api.retry_after, verdict.retry_after) if not verdict.allowed else None
        if retry_after is not None:
            extra.setdefault("Retry-After", retry_after)
        extra["Content-Type"] = "application/json; charset=utf-8"
        payload = json.dumps(body, separators=(",", ":")).encode()
        self.api.store.log_answer(ApiAnswer(split.path, status, payload))
        self.send_full(status, payload, extra)
