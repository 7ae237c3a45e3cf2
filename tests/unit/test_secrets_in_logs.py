"""No secret in any log line, error message or traceback (config/logging.py): logging set up as the service
does it (register_secrets + configure_logging, JSON and console), then the receiver and transfers that fail in
several ways — the API secret, storage keys, SAS tokens and signed-URL signatures never show."""

# ruff: noqa: F811 - the azurite fixture is imported by name

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from config import Settings
from config import logging as log_config
from config.logging import configure_logging, register_secrets, scrub
from tests.conftest import API_KEY, API_SECRET
from tests.fakestream.server import FakeStream
from tests.support.azurite import ACCOUNT, account_sas, azurite, create_container  # noqa: F401
from tests.support.ports import free_port
from tests.support.samples import stream_time
from tests.support.webserver import serve_in_thread
from worker.edge.web import paths
from worker.edge.web.app import create_app
from worker.intake.record import record_routes
from worker.intake.webhook import ready_file, sign
from worker.runtime import Runtime
from worker.storage.local.storage import LocalStorage
from worker.transfer.run import run_transfer

WRONG_ACCOUNT_KEY = base64.b64encode(os.urandom(64)).decode()
S3_SECRET = "s3-secret-" + base64.b32encode(os.urandom(20)).decode()
SIGNATURE = "SiGnAtUrE" + base64.b32encode(os.urandom(15)).decode()
QUERY = f"?Expires=1764237600&Signature={SIGNATURE}&Key-Pair-Id=K2JCJMDEHXQW5F"
# What must never be seen: a value, or a query parameter's value (sig=..., Signature=..., Expires=...).
LEAKS = re.compile(r"(?i)\b(sig|signature|x-amz-signature|expires|key-pair-id)=(?!\*\*\*)[^\s&\"'<>]")


@pytest.fixture(params=["json", "console"])
def captured(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    """Logging as the service sets it up, writing into a buffer; everything restored afterwards."""
    saved = structlog.get_config(), logging.getLogger().handlers[:], logging.getLogger().level
    saved_secrets = set(log_config._secrets)
    configure_logging("DEBUG", request.param)
    structlog.configure(cache_logger_on_first_use=False)  # module loggers must not stay bound after this test
    buffer = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    yield buffer
    structlog.configure(**saved[0])
    logging.captureWarnings(False)
    logging.getLogger().handlers[:], _ = saved[1], logging.getLogger().setLevel(saved[2])
    restore_secrets(saved_secrets)


def restore_secrets(saved: set[str]) -> None:
    log_config._secrets.clear()
    log_config._secrets.update(saved)
    register_secrets([])  # recomputes the masking order


def secrets_of(settings: Settings, sas: str) -> list[str]:
    """Every value that must not appear: the configured secrets, the SAS signature, the URL signature."""
    sig = re.search(r"sig=([^&]+)", sas)
    assert sig is not None
    return [*settings.secrets(), API_SECRET, WRONG_ACCOUNT_KEY, S3_SECRET, sas, sig[1], SIGNATURE]


def assert_clean(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        for form in {secret, json.dumps(secret)[1:-1], secret[:24], secret[-24:]}:
            at = text.find(form)
            assert at < 0, f"{form[:8]}… leaked: {text[max(0, at - 300): at + 100]}"
    leak = LEAKS.search(text)
    assert leak is None, text[max(0, leak.start() - 200): leak.end() + 50]


class BrokenDisk(LocalStorage):
    """A disk that fails with an unexpected error (logged with its traceback) naming what it was given."""

    def open_writer(self, key: str, **kwargs: Any) -> Any:
        raise RuntimeError(f"unexpected failure for {self.url} with {API_SECRET}")


@pytest.fixture
def settings(make_settings: Any, fake: FakeStream, azurite: str, tmp_path: Path) -> tuple[Settings, str]:
    container, sas = create_container(azurite), account_sas(hours=-1)
    unreachable = f"127.0.0.1:{free_port()}"
    abs_base = {"abs_account_name": ACCOUNT, "abs_endpoint_url": azurite}
    built = make_settings(
        env={"STREAM_BASE_URL": fake.base_url},
        download_hosts=[fake.cdn_host, unreachable, "*.stream-io-cdn.com"], call_storage_key="",
        retry_backoff="10s", retry_backoff_max="1m", default_storage="disk",
        storages=[
            {"name": "disk", "storage_type": "local", "bucket": str(tmp_path / "archive")},
            {"name": "az-key", "storage_type": "abs", "bucket": container,
             "azure_blob": {**abs_base, "abs_account_key": WRONG_ACCOUNT_KEY}},
            {"name": "az-sas", "storage_type": "abs", "bucket": container,
             "azure_blob": {**abs_base, "abs_sas_token": sas, "abs_server_side_copy": False}},
            {"name": "s3", "storage_type": "s3", "bucket": "b", "aws_s3": {
                "s3_region": "us-east-1", "s3_api_key": "AKIAEXAMPLE", "s3_secret": S3_SECRET,
                "s3_custom_endpoint_url": f"http://{unreachable}"}},
            {"name": "broken", "storage_type": "local", "bucket": str(tmp_path / "broken")},
        ],
        call_types={"az": ["az-key", "az-sas", "s3"], "broken": "broken"},
    )
    return built, sas


def test_the_receiver_logs_no_secret(captured: io.StringIO, settings: tuple[Settings, str], ledger: Any) -> None:
    """Refused, malformed and accepted deliveries whose bodies carry signed URLs: nothing secret is logged."""
    config, sas = settings
    register_secrets(config.secrets())
    url = f"https://ohio.stream-io-cdn.com/rec.mp4{QUERY}"
    good = {"type": "call.recording_ready", "call_cid": "default:c1", "call_recording": {
        "filename": "rec.mp4", "url": url, "start_time": stream_time(timedelta(minutes=10)),
        "end_time": stream_time(timedelta(minutes=5))}}
    bad_time = {**good, "call_recording": {**good["call_recording"], "start_time": url}}
    bad_cid = {**good, "call_cid": url}
    with serve_in_thread(create_app(config, ledger, lambda ids: None)) as base:
        for event, secret in [(good, API_SECRET), (good, "wrong"), (bad_time, API_SECRET), (bad_cid, API_SECRET)]:
            body = json.dumps(event).encode()
            headers = {"X-Api-Key": API_KEY, "X-Signature": sign(body, secret), "X-Webhook-Id": url}
            response = httpx.post(f"{base}{paths.WEBHOOK}", content=body, headers=headers, timeout=10)
            assert response.status_code in (202, 401, 400)
            assert_clean(response.text, secrets_of(config, sas))
    text = captured.getvalue()
    assert "webhook_refused" in text and "webhook_recorded" in text
    assert_clean(text, secrets_of(config, sas))


def test_failing_transfers_log_no_secret(captured: io.StringIO, settings: tuple[Settings, str], fake: FakeStream,
                                         tmp_path: Path) -> None:
    """Wrong Azure key, expired SAS, unreachable S3 (with its secret), an expired URL the CDN keeps refusing,
    an unreachable host, a refused host and an unexpected error with a traceback: the log lines, the errors
    kept in the ledger and the tracebacks hold no secret."""
    config, sas = settings
    register_secrets(config.secrets())
    runtime = Runtime.from_settings(config)
    broken = BrokenDisk("broken", tmp_path / "broken")
    broken.url = f"http://{fake.cdn_host}/x{QUERY}"  # type: ignore[attr-defined]
    runtime._storages["broken"] = broken
    try:
        az = fake.add_recording("az:call", b"x" * 1000)
        expiring = fake.add_recording("default:expiring", b"x" * 100)
        fake.fail_next(expiring.filename, 403, count=50)
        unreachable = config.archive.download_hosts[1]
        jobs = [(az, None), (expiring, fake.signed_url(expiring, timedelta(seconds=-1))),
                (fake.add_recording("default:unreachable", b"x"), f"http://{unreachable}/rec.mp4{QUERY}"),
                (fake.add_recording("default:metadata", b"x"), f"http://169.254.169.254/latest/rec.mp4{QUERY}"),
                (fake.add_recording("default:rebind", b"x"), f"http://localhost.stream-io-cdn.com/rec.mp4{QUERY}"),
                (fake.add_recording("broken:call", b"x"), None)]
        outcomes = []
        for file, url in jobs:
            stream_file = ready_file(fake.event_for(file, url=url))
            assert stream_file is not None
            for tid in record_routes(runtime.archive, runtime.ledger, stream_file).transfer_ids:
                outcomes.append(run_transfer(runtime, tid))
        errors = [t.error or "" for t in runtime.ledger.iter_transfers() if t.storage != "broken"]
    finally:
        runtime.close()
    assert "archived" not in outcomes and {"failed", "retry"} <= set(outcomes)
    text = captured.getvalue()
    assert "Traceback" in text or "traceback" in text  # the unexpected error was logged with its traceback
    assert "transfer_failed" in text and "transfer_retry_scheduled" in text
    assert_clean(text + "\n".join(errors), secrets_of(config, sas))


@pytest.mark.parametrize(
    "text",
    [f"GET /rec.mp4{QUERY} HTTP/1.1", f"canonical request: sig={SIGNATURE}&se=2026", f"'https://u:{API_SECRET}@h/x'",
     f"https%3A%2F%2Fh%2Fx%3FSignature%3D{SIGNATURE}", f"X-Amz-Signature={SIGNATURE}",
     f"GET /files/WyJkaXNrIiwiYS5tcDQiLDFd.{SIGNATURE} HTTP/1.1"],
)
def test_scrub_masks_signatures_outside_whole_urls(text: str) -> None:
    """A signature in a request line, a bare query or a quoted URL is masked too, not only in a full URL."""
    saved = set(log_config._secrets)
    register_secrets([API_SECRET])
    try:
        assert SIGNATURE not in scrub(text) and API_SECRET not in scrub(text)
    finally:
        restore_secrets(saved)


def test_secrets_are_masked_in_their_escaped_forms() -> None:
    """A multi-line secret (a service-account key) is masked raw, JSON-escaped and repr-escaped; the values
    inside a connection string are masked on their own."""
    saved = set(log_config._secrets)
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
    connection = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={WRONG_ACCOUNT_KEY};"
    register_secrets([json.dumps({"type": "service_account", "private_key": pem}), connection])
    try:
        for shown in (pem, json.dumps(pem), repr(pem), WRONG_ACCOUNT_KEY, json.dumps({"k": pem})):
            assert "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" not in scrub(shown) and WRONG_ACCOUNT_KEY not in scrub(shown)
    finally:
        restore_secrets(saved)


def test_an_unexpected_error_kept_in_the_ledger_has_no_secret(settings: tuple[Settings, str], fake: FakeStream,
                                                                tmp_path: Path) -> None:
    """The error text the ledger keeps (shown by `archiver transfers list`) is scrubbed like a log line."""
    config, sas = settings
    saved = set(log_config._secrets)
    register_secrets(config.secrets())
    runtime = Runtime.from_settings(config)
    broken = BrokenDisk("broken", tmp_path / "broken")
    broken.url = f"http://{fake.cdn_host}/x{QUERY}"  # type: ignore[attr-defined]
    runtime._storages["broken"] = broken
    try:
        stream_file = ready_file(fake.event_for(fake.add_recording("broken:call", b"x")))
        assert stream_file is not None
        (tid,) = record_routes(runtime.archive, runtime.ledger, stream_file).transfer_ids
        assert run_transfer(runtime, tid) == "retry"
        transfer = runtime.ledger.get(tid)
        assert transfer is not None
        assert_clean(transfer.error or "", secrets_of(config, sas))
    finally:
        runtime.close()
        restore_secrets(saved)
