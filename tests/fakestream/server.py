"""A local fake of Stream Video for tests: REST API + signed-URL CDN + webhook sender.

Two real HTTP/1.1 servers on 127.0.0.1 (free ports, daemon threads): the REST API at
``base_url`` and the CDN at ``cdn_host``. Usage::

    with start_fake_stream() as fake:
        rec = fake.add_recording("default:abc", b"...")
        fake.deliver("http://127.0.0.1:8000/webhooks/stream", rec)

Frame recordings (``add_frame_recording``) are served by the CDN and announced by
``call.frame_recording_ready`` only (no endpoint lists them, as at Stream); a session's stats report
(``add_stats_report``) is served by GetCallReport and announced by ``call.stats_report_ready``
(``stats_report_event``, sent with ``deliver_event``).

Finding (getstream 7.0.0): the SDK decodes every date-time with ``datetime_from_unix_ns``, i.e.
``int(value)``; an RFC 3339 string fails with ValueError (surfaced as StreamApiException). So the
REST default here is ``timestamp_format = "ns"``; set ``"rfc3339"`` to test lenient parsers.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from tests.fakestream.api import Api, ApiConfig, ApiHandler
from tests.fakestream.callresponse import call_response
from tests.fakestream.cdn import Cdn, CdnHandler, UrlSigner
from tests.fakestream.events import (
    frame_recording_ready_event,
    ready_event,
    recording_ready_event,
    send_webhook,
    send_webhook_with_retries,
    stats_report_ready_event,
    transcription_ready_event,
)
from tests.fakestream.httpbase import RunningServer
from tests.fakestream.models import (
    RECORDING_TYPES,
    CallRecord,
    FileKind,
    StoredFile,
    TimestampFormat,
    cdn_path_for,
    default_filename,
    digest_content,
    new_egress_id,
    new_session_id,
    now_utc,
    split_cid,
    utc,
)
from tests.fakestream.ratelimit import EndpointRate, RetryAfter
from tests.fakestream.reports import SessionReport
from tests.fakestream.store import ApiRequest, Store

__all__ = [
    "ApiRequest",
    "EndpointRate",
    "FakeStream",
    "SessionReport",
    "StoredFile",
    "frame_recording_ready_event",
    "recording_ready_event",
    "send_webhook",
    "send_webhook_with_retries",
    "start_fake_stream",
    "stats_report_ready_event",
    "transcription_ready_event",
]

MIN_SECRET_BYTES = 32  # PyJWT warns below this for HS256, and pytest turns warnings into errors
DEFAULT_API_SECRET = "fake-secret-for-tests-0123456789abcdef0123456789abcdef"


class _CallSession:
    """Sentinel meaning "use the call's session id" for ``session_id`` parameters."""


CALL_SESSION: Any = _CallSession()


class FakeStream:
    """The running fake (see module docstring). All methods are thread-safe."""

    def __init__(self, api_key: str, api_secret: str, app_id: int) -> None:
        if len(api_secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"api_secret must be at least {MIN_SECRET_BYTES} bytes: PyJWT warns on "
                "shorter HS256 keys and filterwarnings=error turns that into a failure"
            )
        self.api_key, self.api_secret, self.app_id = api_key, api_secret, app_id
        self.url_lifetime = timedelta(minutes=15)
        self.timestamp_format: TimestampFormat = "ns"
        self._store = Store()
        self._signer = UrlSigner()
        self._cdn = Cdn(self._store, self._signer)
        config = ApiConfig(api_key, api_secret, lambda: self.timestamp_format, self.signed_url)
        self._api = Api(self._store, config)
        self._cdn_server = RunningServer(_bind(CdnHandler, "cdn", self._cdn))
        self._api_server = RunningServer(_bind(ApiHandler, "api", self._api))
        self.base_url = f"http://{self._api_server.host}"
        self.cdn_host = self._cdn_server.host
        self._stopped = False

    def __repr__(self) -> str:
        """No secret in the repr."""
        return f"FakeStream(base_url={self.base_url!r}, cdn_host={self.cdn_host!r}, app_id={self.app_id})"

    # ------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """Shut both servers down (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self._cdn_server.stop()
        self._api_server.stop()

    def __enter__(self) -> FakeStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ calls

    def add_call(
        self,
        call_type: str,
        call_id: str,
        *,
        ended_at: datetime | None = None,
        created_at: datetime | None = None,
        custom: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create (or update) a call; returns its CallResponse dict in the current timestamp format.

        Defaults: ``ended_at`` None (ongoing), ``created_at`` one hour before ``ended_at`` (or now).
        """
        cid = f"{call_type}:{call_id}"
        split_cid(cid)
        with self._store.lock:
            existing = self._store.get_call(cid)
            ended = utc(ended_at) if ended_at is not None else (existing.ended_at if existing else None)
            created = (
                utc(created_at)
                if created_at is not None
                else (existing.created_at if existing else (ended or now_utc()) - timedelta(hours=1))
            )
            call = CallRecord(
                call_type,
                call_id,
                created_at=created,
                updated_at=max(created, ended or created),
                ended_at=ended,
                session_id=existing.session_id if existing else new_session_id(),
                custom=dict(custom) if custom is not None else (existing.custom if existing else {}),
            )
            self._store.put_call(call)
        return call_response(call, self.timestamp_format)

    def call(self, call_cid: str) -> CallRecord | None:
        """The call as the fake holds it (its times as set), or None."""
        return self._store.get_call(call_cid)

    def reuse_call(self, call_cid: str, *, at: datetime | None = None) -> str:
        """Join an existing call again, as Stream allows after it ended: a new session starts, so
        ``updated_at`` becomes `at` (default now) while ``ended_at`` stays as it was (Stream does
        not document that it moves). Files added afterwards belong to the new session; returns
        its id. KeyError when the call does not exist."""
        with self._store.lock:
            call = self._store.get_call(call_cid)
            if call is None:
                raise KeyError(call_cid)
            session = new_session_id()
            self._store.put_call(replace(call, session_id=session, updated_at=utc(at) if at else now_utc()))
        return session

    def update_call(self, call_cid: str, *, updated_at: datetime | None = None,
                    ended_at: datetime | None = None) -> None:
        """Set a call's ``updated_at`` and/or ``ended_at``, each independently of the other."""
        with self._store.lock:
            call = self._store.get_call(call_cid)
            if call is None:
                raise KeyError(call_cid)
            self._store.put_call(replace(call, updated_at=utc(updated_at) if updated_at else call.updated_at,
                                         ended_at=utc(ended_at) if ended_at else call.ended_at))

    def _ensure_call(self, call_cid: str, start: datetime, end: datetime) -> CallRecord:
        """The call of a new file, created (ended at the file's end) when unknown. A known call's
        ``updated_at`` moves to the file's end when that is later (the recording changed the call;
        its ``ended_at`` stays)."""
        call = self._store.get_call(call_cid)
        if call is None:
            call_type, call_id = split_cid(call_cid)
            self.add_call(call_type, call_id, created_at=start - timedelta(seconds=5), ended_at=end)
            call = self._store.get_call(call_cid)
        elif end > call.updated_at:
            call = replace(call, updated_at=end)
            self._store.put_call(call)
        assert call is not None
        return call

    # ------------------------------------------------------------------ files

    def add_recording(
        self,
        call_cid: str,
        content: bytes | Path,
        *,
        filename: str | None = None,
        session_id: str | None = CALL_SESSION,
        recording_type: str | None = "composite",
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        audio_only: bool = False,
        participant: str = "user-1",
        egress_id: str | None = None,
    ) -> StoredFile:
        """Store a recording. ``session_id`` defaults to the call's session (a generated UUID); pass None
        for a legacy file without one. ``recording_type`` None also means legacy. Filenames default to
        Stream's patterns (``audio_only`` → ``_audio_…mp3``; individual uses ``participant``)."""
        if recording_type is not None and recording_type not in RECORDING_TYPES:
            raise ValueError(f"recording_type must be one of {RECORDING_TYPES} or None")
        return self._add_file(
            "recording",
            call_cid,
            content,
            filename=filename,
            session_id=session_id,
            recording_type=recording_type,
            start_time=start_time,
            end_time=end_time,
            name_options={"audio_only": audio_only, "participant": participant},
            egress_id=egress_id,
        )

    def add_transcription(
        self,
        call_cid: str,
        content: bytes | Path,
        *,
        filename: str | None = None,
        session_id: str | None = CALL_SESSION,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        egress_id: str | None = None,
    ) -> StoredFile:
        """Store a transcription (JSONL); same defaults as :meth:`add_recording`."""
        return self._add_file(
            "transcription",
            call_cid,
            content,
            filename=filename,
            session_id=session_id,
            recording_type=None,
            start_time=start_time,
            end_time=end_time,
            name_options={},
            egress_id=egress_id,
        )

    def add_frame_recording(
        self,
        call_cid: str,
        content: bytes | Path,
        *,
        filename: str | None = None,
        session_id: str | None = CALL_SESSION,
        captured_at: datetime | None = None,
        track_type: str = "TRACK_TYPE_VIDEO",
        participant: str = "user-1",
        egress_id: str | None = None,
    ) -> StoredFile:
        """Store a still frame (JPEG) captured of ``participant``'s track at ``captured_at`` (default now),
        served by the CDN and announced only by ``call.frame_recording_ready``: no endpoint lists frames."""
        at = utc(captured_at) if captured_at is not None else now_utc()
        return self._add_file(
            "frame_recording",
            call_cid,
            content,
            filename=filename,
            session_id=session_id,
            recording_type=None,
            start_time=at,
            end_time=at,
            name_options={"participant": participant},
            egress_id=egress_id,
            track_type=track_type,
            users=(participant,),
        )

    def add_stats_report(
        self, call_cid: str, *, session_id: str | None = None, participants: int = 2, score: float = 87.5
    ) -> SessionReport:
        """Make the stats report of a session (default: the call's current one) that GetCallReport
        serves; the call is created (ended now) when unknown."""
        end = now_utc()
        with self._store.lock:
            call = self._ensure_call(call_cid, end - timedelta(minutes=1), end)
            report = SessionReport(call_cid, session_id or call.session_id, started_at=call.created_at,
                                   ended_at=call.ended_at or end, participants=participants, score=score)
            self._store.put_report(report)
        return report

    def stats_report_event(self, report: SessionReport, *, ns_timestamps: bool | None = None) -> dict[str, Any]:
        """The ``call.stats_report_ready`` event of ``report``."""
        ns = self.timestamp_format == "ns" if ns_timestamps is None else ns_timestamps
        return stats_report_ready_event(report.call_cid, report.session_id, report.counts(), ns_timestamps=ns)

    def _add_file(
        self,
        kind: FileKind,
        call_cid: str,
        content: bytes | Path,
        *,
        filename: str | None,
        session_id: str | None,
        recording_type: str | None,
        start_time: datetime | None,
        end_time: datetime | None,
        name_options: dict[str, Any],
        egress_id: str | None,
        track_type: str | None = None,
        users: tuple[str, ...] = (),
    ) -> StoredFile:
        """Hash the content, pick name/times/session, register the file and sign its first URL."""
        end = utc(end_time) if end_time is not None else now_utc()
        start = utc(start_time) if start_time is not None else end - timedelta(minutes=1)
        size, sha256, md5 = digest_content(content)
        with self._store.lock:
            call = self._ensure_call(call_cid, start, end)
            name = filename or self._free_name(kind, call_cid, start, recording_type, name_options)
            stored = StoredFile(
                call_cid=call_cid,
                kind=kind,
                filename=name,
                session_id=call.session_id if isinstance(session_id, _CallSession) else session_id,
                recording_type=recording_type,
                start_time=start,
                end_time=end,
                content=content,
                size=size,
                sha256=sha256,
                url="",
                egress_id=egress_id or new_egress_id(),
                etag=f'"{md5}"',
                cdn_path=cdn_path_for(self.app_id, kind, call_cid, name),
                track_type=track_type,
                users=users,
            )
            stored = replace(stored, url=self.signed_url(stored))
            self._store.add_file(stored)
        return stored

    def _free_name(
        self, kind: FileKind, call_cid: str, start: datetime, recording_type: str | None, options: dict[str, Any]
    ) -> str:
        """Default filename; bumps the millisecond stamp while the name is taken."""
        for bump in range(1000):
            name = default_filename(
                kind, call_cid, start + timedelta(milliseconds=bump), recording_type=recording_type, **options
            )
            if not self._store.has_file(call_cid, kind, name):
                return name
        raise ValueError("could not find a free default filename")

    def signed_url(self, file: StoredFile, lifetime: timedelta | None = None) -> str:
        """A fresh CloudFront-style signed CDN URL (negative ``lifetime`` → already expired)."""
        life = self.url_lifetime if lifetime is None else lifetime
        expires = int(now_utc().timestamp() + life.total_seconds())
        return self._signer.url(self.cdn_host, file.cdn_path, expires)

    def delete_file(self, file: StoredFile) -> None:
        """Delete a file as Stream's retention would: CDN 404, gone from the list endpoints."""
        self._store.delete(file)

    def files(self, call_cid: str, kind: FileKind = "recording") -> list[StoredFile]:
        """Live (not deleted) files of a call."""
        return self._store.live_files(call_cid, kind)

    # ------------------------------------------------------------------ faults and observation

    def fail_next(self, path_contains: str, status: int, count: int = 1, *, range_from: int | None = None) -> None:
        """The next ``count`` CDN GETs whose path contains ``path_contains`` answer ``status`` (only GETs of a
        range from byte ``range_from``, when given)."""
        self._cdn.faults.add("fail", path_contains, status, count, range_from)

    def truncate_next(self, path_contains: str, after_bytes: int, count: int = 1, *,
                      range_from: int | None = None) -> None:
        """The next ``count`` matching CDN GETs announce the full Content-Length, then close after N bytes
        (only GETs of a range from byte ``range_from``, when given)."""
        self._cdn.faults.add("truncate", path_contains, after_bytes, count, range_from)

    @property
    def cdn_ignores_range(self) -> bool:
        """True: the CDN answers every GET with the whole file (200), as a source without range support."""
        return self._cdn.ignore_range

    @cdn_ignores_range.setter
    def cdn_ignores_range(self, on: bool) -> None:
        self._cdn.ignore_range = on

    @property
    def cdn_first_byte_delay(self) -> float:
        """Seconds the CDN waits before the first byte of every answer (0: none), as a CDN far away."""
        return self._cdn.first_byte_delay

    @cdn_first_byte_delay.setter
    def cdn_first_byte_delay(self, seconds: float) -> None:
        self._cdn.first_byte_delay = seconds

    @property
    def cdn_handshake_delay(self) -> float:
        """Seconds more the CDN waits before the first answer on each new connection (0: none), as the TCP
        and TLS handshakes with a CDN far away would take."""
        return self._cdn.handshake_delay

    @cdn_handshake_delay.setter
    def cdn_handshake_delay(self, seconds: float) -> None:
        self._cdn.handshake_delay = seconds

    @property
    def cdn_rate(self) -> int:
        """The most bytes per second the CDN sends a body at, on each connection (0: no cap)."""
        return self._cdn.rate

    @cdn_rate.setter
    def cdn_rate(self, bytes_per_second: int) -> None:
        self._cdn.rate = bytes_per_second

    @property
    def cdn_closes_connections(self) -> bool:
        """True: every CDN answer says ``Connection: close`` and ends its connection (no kept connections)."""
        return self._cdn.close_connections

    @cdn_closes_connections.setter
    def cdn_closes_connections(self, on: bool) -> None:
        self._cdn.close_connections = on

    @property
    def cdn_connections(self) -> int:
        """How many TCP connections the CDN accepted."""
        return self._cdn.connections

    def fail_next_api(
        self, path_contains: str, status: int, count: int = 1, *, headers: dict[str, str] | None = None
    ) -> None:
        """The next ``count`` authenticated REST requests whose path matches answer ``status`` (APIError),
        with ``headers`` added (e.g. ``Retry-After``; they replace the X-RateLimit-* the fake would send)."""
        self._api.faults.add(path_contains, status, count, headers)

    def heal_api(self) -> None:
        """Drop every queued REST fault: the API answers normally again."""
        self._api.faults.clear()

    # ------------------------------------------------------------------ rate limits (tests/fakestream/ratelimit.py)

    def limit_api(self, endpoint: str, per_minute: int | None, *, window: float = 60.0) -> None:
        """Limit ``endpoint`` (Stream's operation name: GetCall, ListRecordings, ListTranscriptions,
        QueryCalls, DeleteRecording, DeleteTranscription, GetCallReport) to ``per_minute`` requests a minute and
        per_minute / 30 a second, as Stream does (None: no limit, the default); resets its counts.
        ``window`` shortens the minute for tests (a second is then window / 60)."""
        self._api.limits.set(endpoint, per_minute, window=window)

    def api_rate(self, endpoint: str) -> EndpointRate:
        """Requests ``endpoint`` received (429s included), how many were refused, and the most in
        any second and any minute."""
        return self._api.limits.rate(endpoint)

    @property
    def rate_limit_headers(self) -> bool:
        """Whether answers carry X-RateLimit-Limit/-Remaining/-Reset (default True, as Stream's do)."""
        return self._api.rate_limit_headers

    @rate_limit_headers.setter
    def rate_limit_headers(self, on: bool) -> None:
        self._api.rate_limit_headers = on

    @property
    def retry_after(self) -> RetryAfter:
        """The Retry-After of a 429 over the limits: "seconds" (default), "http-date" or "none"."""
        return self._api.retry_after

    @retry_after.setter
    def retry_after(self, style: RetryAfter) -> None:
        if style not in ("seconds", "http-date", "none"):
            raise ValueError("retry_after must be 'seconds', 'http-date' or 'none'")
        self._api.retry_after = style

    @property
    def missing_status(self) -> int:
        """How the API answers for a call or file that does not exist: 404 (default) or 400, code 16 both."""
        return self._api.missing_status

    @missing_status.setter
    def missing_status(self, status: int) -> None:
        if status not in (400, 404):
            raise ValueError("missing_status must be 400 or 404")
        self._api.missing_status = status

    @property
    def missing_file_status(self) -> int:
        """What the CDN answers for a deleted/unknown key: 404 (default) or 403 (S3 without ListBucket)."""
        return self._cdn.missing_file_status

    @missing_file_status.setter
    def missing_file_status(self, status: int) -> None:
        if status not in (403, 404):
            raise ValueError("missing_file_status must be 403 or 404")
        self._cdn.missing_file_status = status

    @property
    def cdn_requests(self) -> list[tuple[str, str, dict[str, str]]]:
        """(method, escaped path without query, headers with lower-cased names) of every CDN request so far."""
        with self._store.lock:
            return list(self._store.cdn_requests)

    @property
    def api_requests(self) -> list[ApiRequest]:
        """Every REST request so far (method, path, query, headers, body)."""
        with self._store.lock:
            return list(self._store.api_requests)

    def reports_served(self, report: SessionReport) -> list[bytes]:
        """The bodies of every successful GetCallReport answer about ``report``'s session, as sent."""
        with self._store.lock:
            answers = list(self._store.api_answers)
        path = f"/api/v2/video/call/{report.call_cid.replace(':', '/')}/report"
        return [a.body for a in answers if a.status == 200 and a.path == path
                and json.loads(a.body).get("session_id") == report.session_id]

    def downloads_of(self, file: StoredFile) -> int:
        """How many CDN GETs of ``file`` started sending its body (200/206, including truncated ones)."""
        return self._store.downloads_of(file)

    # ------------------------------------------------------------------ webhooks

    def event_for(
        self, file: StoredFile, *, legacy: bool = False, ns_timestamps: bool | None = None, url: str | None = None
    ) -> dict[str, Any]:
        """The ready event for ``file`` with a fresh signed URL; timestamps follow ``timestamp_format``
        unless ``ns_timestamps`` is given."""
        ns = self.timestamp_format == "ns" if ns_timestamps is None else ns_timestamps
        return ready_event(file, legacy=legacy, ns_timestamps=ns, url=url or self.signed_url(file))

    def deliver(
        self,
        target_url: str,
        file: StoredFile,
        *,
        legacy: bool = False,
        ns_timestamps: bool | None = None,
        url: str | None = None,
        **send_kwargs: Any,
    ) -> httpx.Response:
        """Send the file's ready event to ``target_url`` signed with this app's credentials.
        ``send_kwargs`` go to :func:`send_webhook` (gzip, webhook_id, attempt, signature, headers_override, client)."""
        event = self.event_for(file, legacy=legacy, ns_timestamps=ns_timestamps, url=url)
        return send_webhook(target_url, event, api_key=self.api_key, api_secret=self.api_secret, **send_kwargs)


    def deliver_event(self, target_url: str, event: dict[str, Any], **send_kwargs: Any) -> httpx.Response:
        """Send any event (a stats report's, say) to ``target_url`` signed with this app's credentials."""
        return send_webhook(target_url, event, api_key=self.api_key, api_secret=self.api_secret, **send_kwargs)


def _bind(handler: type, attribute: str, value: object) -> type:
    """A handler subclass with ``attribute`` preset (handlers are instantiated per connection)."""
    return type(handler.__name__, (handler,), {attribute: value})


def start_fake_stream(
    api_key: str = "fake-key", api_secret: str = DEFAULT_API_SECRET, app_id: int = 1129528
) -> FakeStream:
    """Start a FakeStream (usable as a context manager that stops it). The secret must be ≥ 32 bytes."""
    return FakeStream(api_key, api_secret, app_id)
