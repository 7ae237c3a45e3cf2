"""``[[notify]]`` and ``notify_retry_for`` (config/notify.py): what is accepted, what is refused, and the
secret kept out of logs like every other."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from config import ArchiveConfig
from config.notify import EVENT_TYPES


def notify(**table: Any) -> ArchiveConfig:
    return ArchiveConfig.model_validate({"notify": [{"url": "https://app.example/hooks", **table}]})


def test_defaults_every_event_json_and_a_day_of_retries() -> None:
    archive = notify(secret="s")
    assert archive.notify[0].events == EVENT_TYPES and archive.notify[0].format == "json"
    assert archive.notify_retry_for == timedelta(hours=24) and ArchiveConfig().notify == ()


def test_the_secret_may_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", "from-env")
    secret = notify(secret="env:HOOK_SECRET").notify[0].secret
    assert secret is not None and secret.get_secret_value() == "from-env"


@pytest.mark.parametrize(("table", "says"), [
    ({}, "needs a secret"),
    ({"secret": "s", "events": ["file.archived", "file.nope"]}, "file.nope"),
    ({"secret": "s", "events": []}, "at least one event"),
    ({"secret": "s", "format": "xml"}, "format"),
    ({"secret": "s", "url": "ftp://app.example/x"}, "http"),
])
def test_refused(table: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        notify(**table)


def test_a_slack_endpoint_needs_no_secret() -> None:
    assert notify(format="slack").notify[0].secret is None


def test_the_secret_is_scrubbed_from_logs(make_settings: Any) -> None:
    settings = make_settings(notify=[{"url": "https://app.example/hooks", "secret": "hook-secret-value"}])
    assert "hook-secret-value" in settings.secrets()
