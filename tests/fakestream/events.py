"""Webhook events (``call.recording_ready`` / ``call.transcription_ready`` / ``call.frame_recording_ready``
/ ``call.stats_report_ready``, as Stream's spec v236.0.4 defines them) and a Stream-like sender.

Delivery follows stream-api.md §2: JSON POST with ``X-WEBHOOK-ID`` (same across retries),
``X-WEBHOOK-ATTEMPT``, ``X-API-KEY``, ``X-SIGNATURE`` = lowercase hex HMAC-SHA256 of the raw
*uncompressed* body keyed with the API secret, and optionally a gzip body with
``Content-Encoding: gzip`` (the signature still covers the uncompressed bytes).
"""

from __future__ import annotations

import gzip as gzip_module
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import httpx

from tests.fakestream.callresponse import user_response
from tests.fakestream.models import StoredFile, TimestampFormat, format_timestamp

WEBHOOK_TIMEOUT = 6.0  # Stream's per-attempt timeout
_RETRY_STATUSES = {408, 429}
# Stream's sender is a Go service; the User-Agent is Go's default (a guess, nothing documents it).
_USER_AGENT = "Go-http-client/1.1"


def _fmt(ns_timestamps: bool) -> TimestampFormat:
    """Timestamp format for the flag."""
    return "ns" if ns_timestamps else "rfc3339"


def _file_object(file: StoredFile, fmt: TimestampFormat, url: str, legacy: bool) -> dict[str, Any]:
    """The ``call_recording`` / ``call_transcription`` object of an event."""
    body: dict[str, Any] = {
        "filename": file.filename,
        "url": url,
        "start_time": format_timestamp(file.start_time, fmt),
        "end_time": format_timestamp(file.end_time, fmt),
    }
    if not legacy and file.session_id is not None:
        body["session_id"] = file.session_id
    if not legacy and file.kind == "recording" and file.recording_type is not None:
        body["recording_type"] = file.recording_type
    return body


def _header(type_: str, file: StoredFile, fmt: TimestampFormat, legacy: bool) -> dict[str, Any]:
    """``type``, ``created_at`` (now, with nanoseconds), ``call_cid`` and, unless legacy, ``egress_id``."""
    event: dict[str, Any] = {
        "type": type_,
        "created_at": format_timestamp(time.time_ns(), fmt),
        "call_cid": file.call_cid,
    }
    if not legacy and file.egress_id:
        event["egress_id"] = file.egress_id
    return event


def recording_ready_event(
    file: StoredFile, *, legacy: bool = False, ns_timestamps: bool = False, url: str | None = None
) -> dict[str, Any]:
    """A ``call.recording_ready`` event for ``file`` (``legacy`` drops session_id/egress_id/recording_type)."""
    if file.kind != "recording":
        raise ValueError("recording_ready_event needs a recording")
    fmt = _fmt(ns_timestamps)
    event = _header("call.recording_ready", file, fmt, legacy)
    if not legacy and file.recording_type is not None:
        event["recording_type"] = file.recording_type
    event["call_recording"] = _file_object(file, fmt, url or file.url, legacy)
    return event


def transcription_ready_event(
    file: StoredFile, *, legacy: bool = False, ns_timestamps: bool = False, url: str | None = None
) -> dict[str, Any]:
    """A ``call.transcription_ready`` event for ``file`` (``legacy`` drops session_id/egress_id)."""
    if file.kind != "transcription":
        raise ValueError("transcription_ready_event needs a transcription")
    fmt = _fmt(ns_timestamps)
    event = _header("call.transcription_ready", file, fmt, legacy)
    event["call_transcription"] = _file_object(file, fmt, url or file.url, legacy)
    return event


def frame_recording_ready_event(
    file: StoredFile, *, legacy: bool = False, ns_timestamps: bool = False, url: str | None = None
) -> dict[str, Any]:
    """A ``call.frame_recording_ready`` event (CallFrameRecordingFrameReadyEvent) for a frame: every
    field required, in the spec's order; ``users`` maps each user id to a UserResponse. ``legacy``
    is accepted for symmetry and changes nothing (the event is newer than the fields it drops)."""
    if file.kind != "frame_recording":
        raise ValueError("frame_recording_ready_event needs a frame recording")
    fmt = _fmt(ns_timestamps)
    event: dict[str, Any] = {
        "type": "call.frame_recording_ready",
        "created_at": format_timestamp(time.time_ns(), fmt),
        "call_cid": file.call_cid,
        "session_id": file.session_id or "",
        "track_type": file.track_type or "TRACK_TYPE_VIDEO",
        "url": url or file.url,
        "captured_at": format_timestamp(file.start_time, fmt),
        "users": {user: user_response(user, file.start_time, fmt) for user in file.users},
        "egress_id": file.egress_id,
    }
    return event


def stats_report_ready_event(call_cid: str, session_id: str, counts: dict[str, int], *,
                             ns_timestamps: bool = False) -> dict[str, Any]:
    """A ``call.stats_report_ready`` event (CallStatsReportReadyEvent): the required fields (``counts``:
    a CallStatsParticipantCounts), with an empty ``participants_overview`` that is not trimmed."""
    return {
        "type": "call.stats_report_ready",
        "created_at": format_timestamp(time.time_ns(), _fmt(ns_timestamps)),
        "call_cid": call_cid,
        "session_id": session_id,
        "counts": dict(counts),
        "participants_overview": [],
        "is_trimmed": False,
    }


_READY_EVENTS = {"recording": recording_ready_event, "transcription": transcription_ready_event,
                 "frame_recording": frame_recording_ready_event}


def ready_event(file: StoredFile, **kwargs: Any) -> dict[str, Any]:
    """The ready event matching the file's kind."""
    return _READY_EVENTS[file.kind](file, **kwargs)


def sign_body(body: bytes, api_secret: str) -> str:
    """Stream's ``X-SIGNATURE``: lowercase hex HMAC-SHA256 of the body keyed with the API secret."""
    return hmac.new(api_secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_request(
    event: dict[str, Any] | bytes,
    *,
    api_key: str,
    api_secret: str,
    gzip: bool = False,
    webhook_id: str | None = None,
    attempt: int = 1,
    signature: str | None = None,
    headers_override: dict[str, str | None] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Build the (wire body, headers) of one delivery; ``None`` in ``headers_override`` removes a header."""
    raw = event if isinstance(event, bytes) else json.dumps(event, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": _USER_AGENT,
        "X-WEBHOOK-ID": webhook_id or str(uuid.uuid4()),
        "X-WEBHOOK-ATTEMPT": str(attempt),
        "X-API-KEY": api_key,
        "X-SIGNATURE": signature if signature is not None else sign_body(raw, api_secret),
    }
    if gzip:
        headers["Content-Encoding"] = "gzip"
    for name, value in (headers_override or {}).items():
        for existing in [k for k in headers if k.lower() == name.lower()]:
            del headers[existing]
        if value is not None:
            headers[name] = value
    return (gzip_module.compress(raw) if gzip else raw), headers


def send_webhook(
    target_url: str,
    event: dict[str, Any] | bytes,
    *,
    api_key: str,
    api_secret: str,
    gzip: bool = False,
    webhook_id: str | None = None,
    attempt: int = 1,
    signature: str | None = None,
    headers_override: dict[str, str | None] | None = None,
    client: httpx.Client | None = None,
) -> httpx.Response:
    """POST one webhook delivery the way Stream does and return the receiver's response."""
    body, headers = webhook_request(
        event,
        api_key=api_key,
        api_secret=api_secret,
        gzip=gzip,
        webhook_id=webhook_id,
        attempt=attempt,
        signature=signature,
        headers_override=headers_override,
    )
    if client is not None:
        return client.post(target_url, content=body, headers=headers)
    with httpx.Client(timeout=WEBHOOK_TIMEOUT) as own:
        return own.post(target_url, content=body, headers=headers)


def send_webhook_with_retries(
    target_url: str,
    event: dict[str, Any] | bytes,
    *,
    api_key: str,
    api_secret: str,
    client: httpx.Client | None = None,
    **kwargs: Any,
) -> list[httpx.Response | httpx.TransportError]:
    """Deliver like Stream's retry policy: up to 3 attempts on 408/429/5xx and timeouts, 2 on network
    errors, same ``X-WEBHOOK-ID`` every time, no back-off. Returns each attempt's response or error."""
    webhook_id = kwargs.pop("webhook_id", None) or str(uuid.uuid4())
    outcomes: list[httpx.Response | httpx.TransportError] = []
    for attempt in range(1, 4):
        try:
            outcome: httpx.Response | httpx.TransportError = send_webhook(
                target_url,
                event,
                api_key=api_key,
                api_secret=api_secret,
                webhook_id=webhook_id,
                attempt=attempt,
                client=client,
                **kwargs,
            )
        except httpx.TransportError as err:
            outcome = err
        outcomes.append(outcome)
        if isinstance(outcome, httpx.Response):
            if outcome.status_code not in _RETRY_STATUSES and outcome.status_code < 500:
                break
        elif not isinstance(outcome, httpx.TimeoutException) and attempt >= 2:
            break
    return outcomes
