"""Rotating Stream's API secret: STREAM_API_SECRET="new,old" (config/settings.py, worker/intake/webhook.py,
worker/stream/client.py through worker/runtime.py, config/logging.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jwt
import pytest

from config import ConfigError, Settings
from config.logging import register_secrets, scrub
from tests.conftest import API_SECRET
from tests.fakestream.server import FakeStream
from tests.unit.conftest import Receiver, ledger_keys
from tests.unit.edge.web.test_web import sample
from worker.errors import BadCredentials, StreamRefused
from worker.intake.webhook import authenticate, sign
from worker.runtime import Runtime

OLD_SECRET = "the-old-secret-being-retired-0123456789"
UNKNOWN = "a-secret-nobody-configured-0123456789"


def rotating(make_settings: Any, secrets: str, **archive: Any) -> Settings:
    settings: Settings = make_settings(env={"STREAM_API_SECRET": secrets}, **archive)
    return settings


def test_several_secrets_are_read_in_order_the_first_signing(make_settings: Any) -> None:
    env = rotating(make_settings, f" {API_SECRET} , {OLD_SECRET} ").env
    assert env.stream_api_secrets == [API_SECRET, OLD_SECRET]
    assert env.stream_api_secret.get_secret_value() == API_SECRET
    assert OLD_SECRET not in repr(env) and API_SECRET not in repr(env)


def test_one_secret_works_as_it_always_has(make_settings: Any) -> None:
    env = rotating(make_settings, API_SECRET).env
    assert env.stream_api_secrets == [API_SECRET]
    assert env.stream_api_secret.get_secret_value() == API_SECRET


@pytest.mark.parametrize("value", ["new,,old", "new,", ",old", " , "])
def test_an_empty_secret_in_the_list_is_a_clear_configuration_error(make_settings: Any, value: str) -> None:
    with pytest.raises(ConfigError, match=r"STREAM_API_SECRET: secrets? [\d, ]+ (is|are) empty") as raised:
        rotating(make_settings, value)
    assert "separated by single commas" in str(raised.value)


def test_every_secret_is_masked_in_logs(make_settings: Any) -> None:
    settings = rotating(make_settings, f"{API_SECRET},{OLD_SECRET}")
    assert {API_SECRET, OLD_SECRET} <= set(settings.secrets())
    register_secrets(settings.secrets())
    assert scrub(f"signed with {OLD_SECRET} then {API_SECRET}") == "signed with *** then ***"


def test_authenticate_takes_any_of_several_secrets() -> None:
    body = b'{"type": "call.session_started"}'
    for secret in (API_SECRET, OLD_SECRET):
        authenticate(body, {"x-api-key": "k", "x-signature": sign(body, secret)}, "k", [API_SECRET, OLD_SECRET])
    with pytest.raises(BadCredentials):
        authenticate(body, {"x-api-key": "k", "x-signature": sign(body, UNKNOWN)}, "k", [API_SECRET, OLD_SECRET])
    with pytest.raises(BadCredentials):
        authenticate(body, {"x-api-key": "k", "x-signature": sign(body, API_SECRET)}, "k", [])


@pytest.fixture
def rotating_receiver(make_receiver: Callable[..., Receiver]) -> Receiver:
    return make_receiver(env={"STREAM_API_SECRET": f"{API_SECRET},{OLD_SECRET}"})


def test_a_webhook_signed_with_the_second_secret_is_accepted(rotating_receiver: Receiver) -> None:
    response = rotating_receiver.post(sample("call.recording_ready.json"), secret=OLD_SECRET)
    assert response.status_code == 202
    assert len(rotating_receiver.ledger.ids("queued")) == 1


def test_a_webhook_signed_with_an_unknown_secret_is_refused_and_nothing_recorded(rotating_receiver: Receiver) -> None:
    response = rotating_receiver.post(sample("call.recording_ready.json"), secret=UNKNOWN)
    assert response.status_code == 401
    assert ledger_keys(rotating_receiver.ledger) == [] and rotating_receiver.queued == []


def test_api_calls_are_signed_with_the_first_secret(make_settings: Any, fake: FakeStream) -> None:
    fake.add_call("default", "c1")
    runtime = Runtime.from_settings(make_settings(env={"STREAM_API_SECRET": f"{API_SECRET},{OLD_SECRET}",
                                                       "STREAM_BASE_URL": fake.base_url}))
    try:
        assert runtime.stream.get_call("default", "c1") is not None  # the fake verifies with API_SECRET
    finally:
        runtime.close()
    token = fake.api_requests[-1].headers["authorization"]
    assert jwt.decode(token, API_SECRET, algorithms=["HS256"]) == {"server": True}
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, OLD_SECRET, algorithms=["HS256"])


def test_api_calls_signed_with_a_secret_stream_does_not_know_yet_are_refused(make_settings: Any,
                                                                             fake: FakeStream) -> None:
    """The order matters: a new secret goes second until Stream has it (docs/operations.md)."""
    runtime = Runtime.from_settings(make_settings(env={"STREAM_API_SECRET": f"{OLD_SECRET},{API_SECRET}",
                                                       "STREAM_BASE_URL": fake.base_url}))
    try:
        with pytest.raises(StreamRefused):
            runtime.stream.get_call("default", "c1")
    finally:
        runtime.close()
