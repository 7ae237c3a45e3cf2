"""CallResponse JSON of the fake API (GetCall, QueryCalls).

It carries every field that ``getstream.models.CallResponse`` (SDK 7.0.0) marks as required,
including the nested required fields of ``settings``, ``egress``, ``ingress``, ``created_by``
and ``session``, so the SDK parses it without relying on ``infer_missing``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.fakestream.models import CallRecord, TimestampFormat, format_timestamp

_LAYOUT = {"external_app_url": "", "external_css_url": "", "name": "spotlight"}
_SETTINGS: dict[str, Any] = {
    "audio": {
        "access_request_enabled": True,
        "default_device": "speaker",
        "hifi_audio_enabled": False,
        "mic_default_on": True,
        "opus_dtx_enabled": True,
        "redundant_coding_enabled": True,
        "speaker_default_on": True,
    },
    "backstage": {"enabled": False},
    "broadcasting": {
        "enabled": False,
        "hls": {"auto_on": False, "enabled": False, "quality_tracks": ["720p"], "layout": _LAYOUT},
        "rtmp": {"enabled": False, "quality": "720p", "layout": _LAYOUT},
    },
    "encryption": {"mode": "disabled"},
    "frame_recording": {"capture_interval_in_seconds": 5, "mode": "disabled"},
    "geofencing": {"names": []},
    "individual_recording": {"mode": "available"},
    "limits": {"max_participants_exclude_roles": []},
    "raw_recording": {"mode": "available"},
    "recording": {"audio_only": False, "mode": "available", "quality": "720p", "layout": _LAYOUT},
    "ring": {"auto_cancel_timeout_ms": 30000, "incoming_call_timeout_ms": 15000, "missed_call_timeout_ms": 15000},
    "screensharing": {"access_request_enabled": True, "enabled": True},
    "session": {"inactivity_timeout_seconds": 30},
    "thumbnails": {"enabled": False},
    "transcription": {"closed_caption_mode": "available", "language": "auto", "mode": "available"},
    "video": {
        "access_request_enabled": True,
        "camera_default_on": True,
        "camera_facing": "front",
        "enabled": True,
        "target_resolution": {"height": 720, "width": 1280},
    },
}


def user_response(user_id: str, when: datetime, fmt: TimestampFormat) -> dict[str, Any]:
    """A UserResponse with every required field."""
    ts = format_timestamp(when, fmt)
    return {
        "id": user_id,
        "name": user_id,
        "role": "user",
        "language": "en",
        "banned": False,
        "online": False,
        "invisible": False,
        "shadow_banned": False,
        "blocked_user_ids": [],
        "teams": [],
        "custom": {},
        "created_at": ts,
        "updated_at": ts,
    }


def session_response(call: CallRecord, fmt: TimestampFormat) -> dict[str, Any]:
    """A CallSessionResponse for the call's (single) session."""
    session: dict[str, Any] = {
        "id": call.session_id,
        "participants": [],
        "anonymous_participant_count": 0,
        "accepted_by": {},
        "missed_by": {},
        "rejected_by": {},
        "participants_count_by_role": {},
        "started_at": format_timestamp(call.created_at, fmt),
    }
    if call.ended_at is not None:
        session["ended_at"] = format_timestamp(call.ended_at, fmt)
    return session


def call_response(call: CallRecord, fmt: TimestampFormat) -> dict[str, Any]:
    """The CallResponse JSON object for ``call`` with date-times written in ``fmt``."""
    body: dict[str, Any] = {
        "cid": call.cid,
        "type": call.call_type,
        "id": call.call_id,
        "created_at": format_timestamp(call.created_at, fmt),
        "updated_at": format_timestamp(call.updated_at, fmt),
        "current_session_id": call.session_id if call.ended_at is None else "",
        "recording": False,
        "transcribing": False,
        "translating": False,
        "captioning": False,
        "backstage": False,
        "blocked_user_ids": [],
        "custom": dict(call.custom),
        "created_by": user_response(call.created_by_id, call.created_at, fmt),
        "egress": {"broadcasting": False, "rtmps": []},
        "ingress": {
            "rtmp": {"address": f"rtmps://ingress.stream-io-video.com:443/fake.{call.call_type}.{call.call_id}"},
            "srt": {"address": ""},
            "whip": {"address": ""},
        },
        "settings": _SETTINGS,
        "session": session_response(call, fmt),
    }
    if call.ended_at is not None:
        body["ended_at"] = format_timestamp(call.ended_at, fmt)
    return body


def call_state(call: CallRecord, fmt: TimestampFormat) -> dict[str, Any]:
    """A CallStateResponseFields object: ``{call, members, own_capabilities}``."""
    return {"call": call_response(call, fmt), "members": [], "own_capabilities": []}
