"""``[[notify]]``: the app's own endpoints told when a file is archived, failed, at risk or lost.

Each table is one endpoint: its URL (the operator's own, so not subject to ``download_hosts``), the
secret its deliveries are signed with, the events it wants and the shape of the body.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from config.types import Secret, Strict

EventType = Literal["file.archived", "session.archived", "file.failed", "file.at_risk", "file.lost",
                    "stream.failure"]
EVENT_TYPES: tuple[EventType, ...] = ("file.archived", "session.archived", "file.failed", "file.at_risk",
                                      "file.lost", "stream.failure")


class NotifyConfig(Strict):
    """One ``[[notify]]`` endpoint."""

    url: str = Field(description="Where each event is POSTed: an http(s) URL of the app's own (not subject to "
                                 "download_hosts). Logs show its host only.")
    secret: Secret | None = Field(
        default=None,
        description='The key of each delivery\'s HMAC-SHA256 signature (X-Archiver-Signature); "env:NAME" or '
                    '"file:/path". Required with format "json".')
    events: tuple[EventType, ...] = Field(
        default=EVENT_TYPES,
        description="The events sent here: any of file.archived, session.archived, file.failed, file.at_risk, "
                    "file.lost, stream.failure (default: all).")
    format: Literal["json", "slack"] = Field(
        default="json",
        description='"json": the signed event ({"id", "type", "created_at", "data"}); "slack": a Slack incoming '
                    'webhook\'s {"text": …}.')

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return url.strip()

    @field_validator("events")
    @classmethod
    def _some_events(cls, events: tuple[EventType, ...]) -> tuple[EventType, ...]:
        if not events:
            raise ValueError("must list at least one event")
        return tuple(dict.fromkeys(events))

    @model_validator(mode="after")
    def _signed(self) -> NotifyConfig:
        if self.format == "json" and (self.secret is None or not self.secret.get_secret_value()):
            raise ValueError("a json endpoint needs a secret (its deliveries are signed with it)")
        return self
