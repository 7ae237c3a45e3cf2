"""Issue 15's headline, end to end: one session of a call with two recordings, a transcription and a stats
report, each announced by the fake Stream's webhook sender signed as Stream signs, ends with

- all four archived byte-identical to what Stream served (the CDN's bytes; for the report, what
  GetCallReport answered for its transfer);
- one manifest for the session, read back from the storage, listing the four with the ledger's keys,
  sizes and SHA-256s, which are those of the stored objects;
- exactly one signed `file.archived` per archived transfer (Stream redelivering the four events records
  nothing new) and, once a reconciliation settled the session,
  exactly one signed `session.archived` naming the manifest and the four files: each verified with the
  README's own `verify` snippet.

Real processes: redis-server, `archiver web`, `archiver worker`, the fake Stream's API, CDN and webhook
sender, and an HTTP endpoint for `[[notify]]`. No scheduler: the test drives `archiver reconcile` itself,
so when the session settles is the test's choice.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.e2e.conftest import Archiver, local_storage, sha256
from tests.fakestream.server import FakeStream
from tests.support.hooks import Hook, HookReceiver
from tests.support.processes import wait_until

pytestmark = pytest.mark.e2e
CALL_TYPE, CALL_ID = "default", "whole-call"
CID = f"{CALL_TYPE}:{CALL_ID}"
SECRET = "whsec-whole-call"
SETTLE = 1.0  # seconds: settle_after
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_verify() -> Callable[[str, Mapping[str, str], bytes], bool]:
    """The `verify` function of the README's notifications section, as an app would paste it."""
    found = re.search(r"```python\n(import hashlib, hmac, time\n\ndef verify\(.*?)```", README.read_text(), re.S)
    assert found, "the README shows how to verify a notification"
    namespace: dict[str, Any] = {}
    exec(found.group(1), namespace)  # noqa: S102 - the README's own snippet, run as written
    return namespace["verify"]  # type: ignore[no-any-return]


def stored(root: Path, key: str) -> bytes:
    return (root / key).read_bytes()


def manifest_settled(client: redis.Redis, name: str, path: Path, files: int) -> bool:
    """The session's manifest lists `files` files, no writer holds it, and the last one written is the latest
    generation's: what a worker archiving a file of the session writes is all written."""
    record = client.hgetall(f"archiver:manifest:{name}")
    return (path.exists() and len(json.loads(path.read_bytes())["files"]) == files
            and not client.exists(f"archiver:manifest:{name}:lock")
            and record.get("written_generation") == record.get("generation"))


def test_a_whole_session_is_archived_listed_in_its_manifest_and_announced_signed_once(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path, hooks: HookReceiver, redis_url: str
) -> None:
    verify, root = readme_verify(), tmp_path / "archive"
    service = archiver([local_storage(root)], kinds=["recording", "transcription", "stats_report"],
                       settle_after=f"{SETTLE}s", notify=[{"url": hooks.url, "secret": SECRET, "format": "json"}])
    url = service.start_web()
    service.start_worker()
    ended = datetime.now(UTC) - timedelta(minutes=5)
    fake.add_call(CALL_TYPE, CALL_ID, ended_at=ended, custom={"project": "whole"})
    rng = random.Random(15)
    recordings = [fake.add_recording(CID, rng.randbytes(size), filename=f"rec_{CALL_TYPE}_{CALL_ID}_{n}.mp4",
                                     end_time=ended) for n, size in ((1, 700_000), (2, 1_300_000))]
    text = fake.add_transcription(CID, b'{"text": "the whole call"}\n' * 50, end_time=ended,
                                  filename=f"transcript_{CALL_TYPE}_{CALL_ID}_1.jsonl")
    session = recordings[0].session_id
    assert session and {f.session_id for f in (*recordings, text)} == {session}
    report = fake.add_stats_report(CID, participants=3)
    assert report.session_id == session
    for file in (*recordings, text):
        assert fake.deliver(url, file).status_code == 202
    event = fake.stats_report_event(report)
    reported_at = time.time()  # the event's created_at is no later: the report's time, the session's end
    assert fake.deliver_event(url, event).status_code == 202

    # All four archived, byte-identical to what Stream served.
    archived = {t["filename"]: t for t in service.wait_for_states(4)}
    assert len(service.transfers()) == 4
    report_name = f"stats_report_{session}.json"
    assert set(archived) == {*(f.filename for f in (*recordings, text)), report_name}
    for file in (*recordings, text):
        entry = archived[file.filename]
        assert (entry["kind"], entry["bytes"], entry["sha256"]) == (file.kind, file.size, file.sha256)
        assert sha256(stored(root, entry["key"])) == file.sha256
    served = fake.reports_served(report)
    entry = archived[report_name]
    assert (entry["kind"], entry["session_id"]) == ("stats_report", session)
    assert stored(root, entry["key"]) in served  # one GetCallReport per attempt: the transfer's own answer
    assert (entry["bytes"], entry["sha256"]) == (len(stored(root, entry["key"])), sha256(stored(root, entry["key"])))

    # One file.archived per archived transfer, before the session is settled.
    delivered = service.wait_for_delivered(hooks, 4)
    assert sorted(h.event["data"]["id"] for h in delivered) == sorted(t["id"] for t in archived.values())
    redelivered = [fake.deliver(url, file) for file in (*recordings, text)] + [fake.deliver_event(url, event)]
    assert [(r.status_code, r.json()["status"]) for r in redelivered] == [(200, "known")] * 4  # Stream retrying

    # A reconciliation past `settle_after` after the session's end settles it: the final manifest, then
    # session.archived. It runs once the manifest that the last archived file made is written.
    key, name = f"{CALL_TYPE}/{CALL_ID}/manifest_{session}.json", f"{CID}:{session}"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        wait_until(lambda: manifest_settled(client, name, root / key, 4), timeout=30, message="the manifest of four")
        assert json.loads(stored(root, key))["complete"] is False
        assert {n["type"] for n in service.notifications()} == {"file.archived"}  # not settled: no listing yet
        wait_until(lambda: time.time() > reported_at + SETTLE + 0.1, timeout=10, message="settle_after passed")
        result = service.cli("reconcile")
        assert result.returncode == 0, result.stderr
        delivered = service.wait_for_delivered(hooks, 5)
        assert service.cli("reconcile").returncode == 0  # settled already: nothing announced again
        record = client.hgetall(f"archiver:manifest:{name}")
    finally:
        client.close()

    # The manifest, read back from the storage: the four files, as the ledger and the stored objects say.
    body = stored(root, key)
    assert (record["key"], record["sha256"], int(record["bytes"])) == (key, sha256(body), len(body))
    manifest = json.loads(body)
    assert manifest["complete"] is True and manifest["session"]["session_id"] == session
    assert manifest["call"]["call_cid"] == CID and manifest["call"]["custom"] == {"project": "whole"}
    assert sorted(f["filename"] for f in manifest["files"]) == sorted(archived)
    for listed in manifest["files"]:
        entry = archived[listed["filename"]]
        assert (listed["kind"], listed["key"], listed["bytes"], listed["sha256"], listed["storage"]) == (
            entry["kind"], entry["key"], entry["bytes"], entry["sha256"], entry["storage"])
        assert sha256(stored(root, listed["key"])) == listed["sha256"]

    # Every delivery: signed (the README's check), its id in the header, each event once, nothing else sent.
    assert all(verify(SECRET, h.headers, h.body) for h in hooks.hooks)
    assert all(h.headers["Content-Type"] == "application/json" for h in hooks.hooks)
    assert all(h.headers["X-Archiver-Event-Id"] == h.event["id"] for h in hooks.hooks)
    assert len(hooks.hooks) == len({h.event["id"] for h in hooks.hooks}) == 5
    by_type: dict[str, list[Hook]] = {}
    for hook in delivered:
        by_type.setdefault(hook.event["type"], []).append(hook)
    assert sorted(by_type) == ["file.archived", "session.archived"] and len(by_type["file.archived"]) == 4
    ledger = {t["id"]: t for t in service.transfers()}
    assert {h.event["data"]["id"]: h.event["data"] for h in by_type["file.archived"]} == ledger
    (closing,) = by_type["session.archived"]
    data = closing.event["data"]
    assert (data["call_cid"], data["session_id"], data["manifest_key"]) == (CID, session, key)
    assert {f["filename"]: (f["key"], f["bytes"], f["sha256"]) for f in data["files"]} == {
        t["filename"]: (t["key"], t["bytes"], t["sha256"]) for t in archived.values()}
    outbox = service.notifications()
    assert len(outbox) == 5 and {n["state"] for n in outbox} == {"delivered"}
