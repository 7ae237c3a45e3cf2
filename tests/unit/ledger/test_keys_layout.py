"""The ledger's key names (worker/ledger/keys.py) are public: operators read them and existing ledgers
hold them. Every one is pinned here, byte for byte, for a sample prefix; and the Lua scripts, which
spell the same names from the prefix, are checked to write exactly the names keys.py builds."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis

from tests.unit.ledger.test_ledger import END, a_file
from worker.ledger.keys import DEFAULT_PREFIX, FIGURES, Keys
from worker.ledger.models import NewTransfer
from worker.ledger.store import Ledger
from worker.notify.outbox import Outbox, event_id

K = Keys("p:")
ENDPOINT = "GET /api/v2/video/call/{type}/{id}"
URL = "http://127.0.0.1:8123/sample.mp4"


def test_the_default_prefix() -> None:
    assert DEFAULT_PREFIX == "archiver:" and Keys().prefix == "archiver:"
    assert Keys().transfer("t1") == "archiver:transfer:t1"


@pytest.mark.parametrize(("built", "spelled"), [
    (K.file("f1"), "p:file:f1"),
    (K.file_transfers("f1"), "p:file:f1:transfers"),
    (K.transfer("t1"), "p:transfer:t1"),
    (K.upload("t1"), "p:upload:t1"),
    (K.transfers, "p:transfers"),
    (K.state("queued"), "p:state:queued"),
    (K.due, "p:due"),
    (K.expiry, "p:expiry"),
    (K.unrouted, "p:unrouted"),
    (K.call("default:c1"), "p:call:default:c1"),
    (K.call_files("c1"), "p:call_files:c1"),
    (K.index_type("default"), "p:index:type:default"),
    (K.index_day("2026-03-03"), "p:index:day:2026-03-03"),
    (K.index_days, "p:index:days"),
    (K.index_custom("tenant=acme"), "p:index:custom:tenant=acme"),
    (K.index_migration, "p:index:migration"),
    (K.running("s3"), "p:running:s3"),
    (K.key_owner("s3"), "p:keyowner:s3"),
    (K.session_files("default:c1:s1"), "p:session:default:c1:s1"),
    (K.call_sessions("default:c1"), "p:sessions:default:c1"),
    (K.sessions_settled, "p:sessions:settled"),
    (K.manifest("default:c1:s1"), "p:manifest:default:c1:s1"),
    (K.manifest_lock("default:c1:s1"), "p:manifest:default:c1:s1:lock"),
    (K.scheduler_lock, "p:scheduler:lock"),
    (K.failure("recording", "default:c1", "eg1"), "p:failure:recording:default:c1:eg1"),
    (K.stream_failures, "p:stream_failures"),
    (K.schema_version, "p:schema_version"),
    (K.schema_migration_lock, "p:schema_migration_lock"),
    (K.at_risk, "p:at_risk"),
    (K.at_risk_at, "p:at_risk_at"),
    (K.reconcile_marks, "p:reconcile:marks"),
    (K.reconcile_failed, "p:reconcile:failed"),
    (K.backfill("nightly"), "p:backfill:nightly"),
    (K.backfill_calls("nightly"), "p:backfill:nightly:calls"),
    (K.backfill_queue("nightly"), "p:backfill:nightly:queue"),
    (K.audit_run("scheduled"), "p:audit:run:scheduled"),
    (K.audit_calls("scheduled"), "p:audit:run:scheduled:calls"),
    (K.audit_files("scheduled"), "p:audit:run:scheduled:files"),
    (K.audit_rows("scheduled"), "p:audit:run:scheduled:rows"),
    (K.audit_last, "p:audit:last"),
    (K.trial_permit(URL), f"p:trial_permit:{URL}"),
    (K.link_key, "p:link_key"),
    (K.auditlog_pending, "p:auditlog:pending"),
    (K.auditlog_chain, "p:auditlog:chain"),
    (K.auditlog_head, "p:auditlog:head"),
    (K.auditlog_exports, "p:auditlog:exports"),
    (K.auditlog_export_lock, "p:auditlog:export_lock"),
    (K.tally("archived"), "p:stats:tally:archived"),
    (K.notify_event("ev_1"), "p:notify:event:ev_1"),
    (K.notify_delivery("ev_1:e1"), "p:notify:delivery:ev_1:e1"),
    (K.notify_attempts("ev_1:e1"), "p:notify:attempts:ev_1:e1"),
    (K.notify_due, "p:notify:due"),
    (K.notify_state("pending"), "p:notify:state:pending"),
    (K.notify_outcomes, "p:notify:outcomes"),
    (K.hold("default:c1"), "p:hold:default:c1"),
    (K.holds, "p:holds"),
    (K.erased("f_1"), "p:erased:f_1"),
])
def test_every_key_is_spelled_as_it_always_was(built: str, spelled: str) -> None:
    assert built == spelled


def test_the_stream_budget_keys_in_the_order_its_script_takes_them() -> None:
    assert K.stream_api(ENDPOINT) == [f"p:stream_api:state:{ENDPOINT}", f"p:stream_api:minute:{ENDPOINT}",
                                      f"p:stream_api:second:{ENDPOINT}"]


def test_the_figures_and_nothing_else() -> None:
    assert sorted(K.figure(name) for name in FIGURES) == [
        "p:stats:bytes", "p:stats:bytes_by_day", "p:stats:duration", "p:stats:failures", "p:stats:files_received",
        "p:stats:last_webhook", "p:stats:retries", "p:stats:stream_requests", "p:stats:stream_wait_ms",
        "p:stats:webhooks", "p:storage_health",
    ]
    with pytest.raises(ValueError, match="no such figure"):
        K.figure("stats:typo")


def test_the_outbox_scripts_write_the_names_keys_py_builds(redis_url: str) -> None:
    """An announced change, its delivery claimed and answered: every key written is one keys.py names."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    routes = '{"retry_ms": 60000, "endpoints": [{"id": "e1", "events": ["file.failed"]}]}'
    ledger, file = Ledger(client, "out:", outbox=routes), a_file()
    ledger.record(file, [NewTransfer("t1", "s3", "default/x/a.mp4")], expires_at=END + timedelta(days=14))
    assert ledger.finish("t1", ledger.claim("t1", "w1", 60_000).token, "failed", error="boom")
    outbox, eid = Outbox(ledger), event_id("file.failed", "t1")
    did = f"{eid}:e1"
    assert outbox.finish(did, outbox.claim(did, 60_000).token, ok=False, status=503, retry_in_ms=1000) == "pending"
    k = ledger.keys
    try:
        assert {key for key in client.scan_iter(match="out:notify:*")} == {
            k.notify_event(eid), k.notify_delivery(did), k.notify_attempts(did), k.notify_due,
            k.notify_state("pending"), k.notify_outcomes}
    finally:
        client.delete(*client.scan_iter(match="out:*"))
        client.close()


def test_the_scripts_write_the_names_keys_py_builds(redis_url: str) -> None:
    """Intake (indexing the file, with custom terms), claim, a retry (and its audit-log entry), routing,
    the lock, an unfinished upload recorded, a noted failure: every key the scripts wrote under the prefix
    is one keys.py names."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    ledger = Ledger(client, "lay:")
    k = ledger.keys
    waiting, file = a_file("rec_default_x_2.mp4"), a_file()
    ledger.record(file, [NewTransfer("t1", "s3", "default/x/a.mp4")], expires_at=END + timedelta(days=14),
                  custom=["tenant=acme"])
    ledger.record(waiting, [], expires_at=END + timedelta(days=14), route_in_ms=0)
    claim = ledger.claim("t1", "w1", 60_000)
    assert ledger.finish("t1", claim.token, "failed", error="boom") and ledger.retry("t1")
    assert ledger.defer_routing(waiting.file_id, 1_000, "no call yet")
    assert ledger.acquire_lock("tok", 60_000)
    claim = ledger.claim("t1", "w1", 60_000)
    assert claim.claimed and ledger.save_upload("t1", claim.token, '{"offset": 0, "pieces": [], "handle": {}}')
    assert ledger.note_failure({"kind": "recording", "call_cid": "default:x", "egress_id": "eg1"})
    ledger.cache_call("default:x", {"id": "x"}, 60_000)
    try:
        assert sorted(client.scan_iter(match="lay:*")) == sorted([
            k.file(file.file_id), k.file_transfers(file.file_id), k.file(waiting.file_id), k.transfer("t1"),
            k.upload("t1"), k.transfers, k.state("transferring"), k.due, k.expiry, k.unrouted, k.running("s3"),
            k.key_owner("s3"), k.scheduler_lock, k.failure("recording", "default:x", "eg1"), k.stream_failures,
            k.call("default:x"), k.call_files("x"), k.session_files("default:x:s1"),
            k.call_sessions("default:x"), k.index_type("default"), k.index_day(f"{file.start_time:%Y-%m-%d}"),
            k.index_days, k.index_custom("tenant=acme"), k.auditlog_pending,
        ])
    finally:
        client.delete(*client.scan_iter(match="lay:*"))
        client.close()
