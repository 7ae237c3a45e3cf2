"""Stats reports of the fake: GetCallReport's answer and the counts of ``call.stats_report_ready``.

Shapes from Stream's spec (v236.0.4): GetCallReportResponse requires ``duration`` (added by the
handler, as on every answer), ``session_id`` and ``report`` (a ReportResponse: ``participants``
{sum, unique}, ``user_ratings`` {count, average}, ``call`` {score, started_at, ended_at}); the
optional ``session`` is a CallSessionResponse. CallStatsParticipantCounts requires participants,
sessions, live_sessions, publishers, peak_concurrent_users, peak_concurrent_sessions and sfus_used.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from tests.fakestream.callresponse import session_response
from tests.fakestream.models import CallRecord, TimestampFormat, format_timestamp


@dataclass(frozen=True)
class SessionReport:
    """The report Stream makes of one session of a call once it ended."""

    call_cid: str
    session_id: str
    started_at: datetime
    ended_at: datetime
    participants: int = 2
    score: float = 87.5

    def counts(self) -> dict[str, int]:
        """The event's CallStatsParticipantCounts."""
        return {
            "participants": self.participants,
            "sessions": self.participants,
            "live_sessions": 0,
            "publishers": self.participants,
            "peak_concurrent_users": self.participants,
            "peak_concurrent_sessions": self.participants,
            "sfus_used": 1,
        }

    def response(self, call: CallRecord, fmt: TimestampFormat) -> dict[str, Any]:
        """GetCallReportResponse without ``duration``."""
        session = replace(call, session_id=self.session_id, created_at=self.started_at, ended_at=self.ended_at)
        return {
            "session_id": self.session_id,
            "session": session_response(session, fmt),
            "report": {
                "participants": {"sum": self.participants, "unique": self.participants,
                                 "max_concurrent": self.participants},
                "user_ratings": {"count": 0, "average": 0.0},
                "call": {"score": self.score, "started_at": format_timestamp(self.started_at, fmt),
                         "ended_at": format_timestamp(self.ended_at, fmt)},
            },
            "video_reactions": [],
        }
