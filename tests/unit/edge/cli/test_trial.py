"""`archiver try`'s sample (worker/edge/trial/): events shaped as Stream's, a new call each
run, signed as Stream signs, served at exactly their own paths."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from worker.edge.trial.report import deliver
from worker.edge.trial.sample import SampleServer, make_trial, ready_event
from worker.edge.web import paths
from worker.intake.webhook import authenticate, parse_event, ready_file

SAMPLES = Path(__file__).parents[3] / "samples"


def shape(value: Any) -> Any:
    """The keys of a JSON value, recursively (values left out)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    return type(value).__name__


@pytest.mark.parametrize("kind", ["recording", "transcription"])
def test_the_events_are_shaped_as_streams_with_fresh_times(kind: str) -> None:
    now = datetime.now(UTC)
    trial = make_trial("http://127.0.0.1:1", now)
    [sample] = [s for s in trial.samples if s.kind == kind]
    event = ready_event(trial, sample, now)
    stream = json.loads((SAMPLES / f"call.{kind}_ready.json").read_text())
    stream.pop("received_at", None)  # in Stream's docs example, not in its spec
    assert shape(event) == shape(stream)
    file = ready_file(parse_event(json.dumps(event).encode()))
    assert file is not None and file.file_id == sample.stream_file(trial.call_cid).file_id
    assert now - timedelta(minutes=5) < file.start_time < file.end_time < now
    assert sample.path in file.url and file.url.startswith("http://127.0.0.1:1/")


def test_each_trial_is_a_new_call_of_the_default_type() -> None:
    now = datetime.now(UTC)
    first, second = make_trial("http://h:1", now), make_trial("http://h:1", now)
    assert first.call_cid != second.call_cid
    assert first.call_cid.startswith("default:archiver-try-") and len(first.call_id) == len("archiver-try-") + 12
    assert {s.filename.rsplit(".", 1)[1] for s in first.samples} == {"mp3", "jsonl"}


def test_the_sample_server_serves_its_files_at_exactly_their_paths() -> None:
    with SampleServer("127.0.0.1") as server:
        trial = make_trial(server.base_url, datetime.now(UTC))
        server.serve(trial.samples)
        recording = trial.samples[0]
        got = httpx.get(recording.url, trust_env=False)
        assert got.status_code == 200 and got.content == recording.body
        assert got.headers["content-type"] == "audio/mpeg"
        for other in (recording.path + "x", recording.path.rsplit("/", 1)[0] + "/", "/"):
            assert httpx.get(server.base_url + other, trust_env=False).status_code == 404
        assert httpx.head(recording.url, trust_env=False).headers["content-length"] == str(len(recording.body))
        assert server.fetched == {recording.path: 1}


class Receiver(ThreadingHTTPServer):
    """Keeps the one request it answers 202 to."""

    def __init__(self) -> None:
        self.seen: list[tuple[bytes, dict[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.seen.append((body, {k.lower(): v for k, v in self.headers.items()}))
                answer = b'{"status": "accepted", "file_id": "f_1"}'
                self.send_response(202)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_delivery_is_signed_as_stream_signs_it(receiver: Receiver) -> None:
    now = datetime.now(UTC)
    trial = make_trial("http://127.0.0.1:1", now)
    url = f"http://127.0.0.1:{receiver.server_address[1]}{paths.WEBHOOK}"
    delivery = deliver(url, ready_event(trial, trial.samples[0], now), "trykey", "trysecret")
    assert (delivery.status, delivery.reason, delivery.file_id) == (202, "accepted", "f_1")
    [(body, headers)] = receiver.seen
    authenticate(body, headers, "trykey", "trysecret")  # raises unless X-Api-Key and X-Signature are right
    assert headers["content-type"] == "application/json" and headers["x-webhook-id"]
