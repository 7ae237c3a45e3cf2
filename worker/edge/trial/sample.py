"""`archiver try`'s sample: two files, the ready events that announce them, and the server that serves them.

One trial is one made-up call, ``default:archiver-try-<12 hex digits>``: a new id each run, so the
receiver records new files (never "known" ones from an earlier run), and the call type ``default``,
Stream's own, so the files take the route a real ``default`` call's files take (``[call_types]``,
then ``default_storage``) and land under that call's key (``default/archiver-try-…/`` with the
default key template), easy to tell from real calls and to delete. Its files are a second of
silent MP3 (a composite audio recording) and a two-line JSONL transcription, named as Stream names
them; the events are shaped as Stream's (``tests/samples/*.json``) with times of now.

`SampleServer` serves exactly these files' paths (GET and HEAD; anything else is a 404) from a
port of its own, in a thread. The worker may fetch them only because ``archiver try`` writes a
one-file permission for each URL first (`worker.intake.permits`).
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from worker.files import Kind, StreamFile, content_type_for

CALL_TYPE = "default"
CALL_PREFIX = "archiver-try-"
# One MPEG-1 Layer III frame, 128 kbit/s, 44.1 kHz, mono, no CRC, all side info zero: silence.
_MP3_FRAME = bytes.fromhex("fffb90c4") + bytes(413)
_MP3_FRAMES_PER_SECOND = 38


@dataclass(frozen=True)
class Sample:
    """One sample file: what it is, where it is served, and its bytes."""

    kind: Kind
    filename: str
    path: str
    url: str
    body: bytes
    start_time: datetime
    end_time: datetime

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    def stream_file(self, call_cid: str) -> StreamFile:
        """The file as the ledger will know it (for its `file_id`)."""
        return StreamFile(call_cid=call_cid, kind=self.kind, filename=self.filename, url=self.url,
                          start_time=self.start_time, end_time=self.end_time)


@dataclass(frozen=True)
class Trial:
    """One trial call and its two samples."""

    call_cid: str
    session_id: str
    samples: tuple[Sample, ...]

    @property
    def call_id(self) -> str:
        return self.call_cid.split(":", 1)[1]


def new_call_cid() -> str:
    return f"{CALL_TYPE}:{CALL_PREFIX}{uuid.uuid4().hex[:12]}"


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _transcript(call_cid: str, start: datetime) -> bytes:
    lines = [
        {"type": "speech", "start_time": _stamp(start), "stop_time": _stamp(start + timedelta(seconds=2)),
         "speaker_id": "archiver-try", "text": f"This is the archiver's trial call {call_cid}."},
        {"type": "speech", "start_time": _stamp(start + timedelta(seconds=3)),
         "stop_time": _stamp(start + timedelta(seconds=5)), "speaker_id": "archiver-try",
         "text": "If you can read this in your storage, archiving works."},
    ]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def _stamp(moment: datetime, digits: int = 3) -> str:
    """RFC 3339 UTC with `digits` fractional digits (Stream sends 3 in files, 9 in created_at)."""
    fraction = f"{moment.microsecond:06d}000"[:digits]
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + fraction + "Z"


def make_trial(base_url: str, now: datetime, call_cid: str | None = None) -> Trial:
    """A new trial call whose two files are served under `base_url` (``http://host:port``)."""
    call_cid = call_cid or new_call_cid()
    call_type, _, call_id = call_cid.partition(":")
    start, end = now - timedelta(seconds=75), now - timedelta(seconds=12)
    expires = int((end + timedelta(days=14)).timestamp())
    folder = f"{call_type}_{call_id}"
    files: list[tuple[Kind, str, str, bytes]] = [
        ("recording", f"rec_{folder}_audio_{_ms(start)}.mp3", "recordings",
         _MP3_FRAME * _MP3_FRAMES_PER_SECOND),
        ("transcription", f"transcript_{folder}_{_ms(start)}.jsonl", "transcriptions", _transcript(call_cid, start)),
    ]
    samples = []
    for kind, filename, section, body in files:
        path = f"/video/{section}/{folder}/{filename}"
        samples.append(Sample(kind=kind, filename=filename, path=path, url=f"{base_url}{path}?Expires={expires}",
                              body=body, start_time=start, end_time=end))
    return Trial(call_cid=call_cid, session_id=str(uuid.uuid4()), samples=tuple(samples))


def ready_event(trial: Trial, sample: Sample, now: datetime) -> dict[str, Any]:
    """The ``call.recording_ready`` / ``call.transcription_ready`` event Stream would send for `sample`."""
    item: dict[str, Any] = {"filename": sample.filename, "url": sample.url, "start_time": _stamp(sample.start_time),
                            "end_time": _stamp(sample.end_time), "session_id": trial.session_id}
    egress_id = f"EG_{trial.call_id}_{sample.kind}"
    if sample.kind == "recording":
        return {"type": "call.recording_ready", "created_at": _stamp(now, 9), "call_cid": trial.call_cid,
                "egress_id": egress_id, "recording_type": "composite",
                "call_recording": {**item, "recording_type": "composite"}}
    return {"type": "call.transcription_ready", "created_at": _stamp(now, 9), "call_cid": trial.call_cid,
            "egress_id": egress_id, "call_transcription": item}


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class SampleServer:
    """Serves `samples` at their paths (exactly), from `host` on a free port, in a thread; a context
    manager. `fetched` counts the GETs of each path (to tell "never fetched" from "fetched, then")."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.files: dict[str, tuple[bytes, str]] = {}
        self.fetched: dict[str, int] = {}
        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
        self._server = server_class((host, 0), self._handler())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="archiver-try-server", daemon=True)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve(self, samples: tuple[Sample, ...]) -> None:
        """Serve `samples` (replacing any served before)."""
        self.files = {s.path: (s.body, content_type_for(s.filename)) for s in samples}

    def __enter__(self) -> SampleServer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._answer(with_body=True)

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
                self._answer(with_body=False)

            def _answer(self, *, with_body: bool) -> None:
                path = self.path.split("?", 1)[0]
                found = server.files.get(path)
                if found is None:
                    self.send_error(404)
                    return
                body, content_type = found
                if with_body:
                    server.fetched[path] = server.fetched.get(path, 0) + 1
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()[:16]}"')
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def log_message(self, *_: Any) -> None:  # the trial prints its own account
                pass

        return Handler
