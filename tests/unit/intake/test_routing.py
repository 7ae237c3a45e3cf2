"""Routing rules (worker/intake/routing.py) and resolving a waiting file (worker/intake/resolve.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from config import ArchiveConfig
from tests.fakestream.server import FakeStream
from worker.clock import now_ms
from worker.files import StreamFile
from worker.intake.record import record_file
from worker.intake.resolve import resolve_file
from worker.intake.routing import Route, route
from worker.intake.webhook import ready_file
from worker.runtime import Runtime

T = datetime(2026, 11, 1, tzinfo=UTC)


def config(**values: Any) -> ArchiveConfig:
    storages = [{"name": n, "storage_type": "local", "bucket": f"/tmp/{n}"} for n in ("a", "b", "c")]
    return ArchiveConfig.model_validate({"storages": storages, "default_storage": "a", **values})


def file(call_cid: str = "default:x") -> StreamFile:
    return StreamFile(call_cid=call_cid, kind="recording", filename="r.mp4", url="https://x/y",
                      start_time=T, end_time=T)


def call(custom: dict[str, Any]) -> dict[str, Any]:
    return {"cid": "default:x", "custom": custom}


def test_the_default_applies_when_nothing_else_does() -> None:
    assert route(config(), file()) == [Route("a")]


def test_call_type_beats_default_and_call_data_beats_both() -> None:
    rules = config(call_types={"default": "b"})
    assert route(rules, file()) == [Route("b")]
    assert route(rules, file(), call({"archive_storage": "c"})) == [Route("c")]
    assert route(rules, file(), call({"other": "c"})) == [Route("b")]


def test_a_route_may_name_several_storages() -> None:
    assert route(config(default_storage=["a", "b"]), file()) == [Route("a"), Route("b")]
    assert route(config(), file(), call({"archive_storage": ["c", "b", "c"]})) == [Route("c"), Route("b")]


def test_the_call_storage_key_is_configurable_and_can_be_off() -> None:
    assert route(config(call_storage_key="vault"), file(), call({"vault": "b"})) == [Route("b")]
    assert route(config(call_storage_key=""), file(), call({"archive_storage": "b"})) == [Route("a")]


def test_unknown_names_in_call_data_are_ignored() -> None:
    assert route(config(), file(), call({"archive_storage": ["nope", "b"]})) == [Route("b")]
    assert route(config(), file(), call({"archive_storage": "nope"})) == [Route("a")]
    assert route(config(), file(), call({"archive_storage": 42})) == [Route("a")]


def test_stream_s3_means_skipped_with_the_rule_that_said_so() -> None:
    (skip,) = route(config(call_types={"default": "stream-s3"}), file())
    assert skip.storage == "stream-s3" and "call_types.default" in (skip.skip_reason or "")
    (skip,) = route(config(), file(), call({"archive_storage": "stream-s3"}))
    assert "custom.archive_storage" in (skip.skip_reason or "")


def test_routes_must_name_known_storages() -> None:
    with pytest.raises(ValueError, match="no storage named 'z'"):
        config(call_types={"default": ["a", "z"]})
    with pytest.raises(ValueError, match="cannot be combined"):
        config(default_storage=["a", "stream-s3"])


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime]) -> Runtime:
    return make_runtime("a", "b", retry_backoff="1s", call_lookup_timeout="1h")


def deliver(runtime: Runtime, fake: FakeStream, call_cid: str) -> str:
    stream_file = ready_file(fake.event_for(fake.add_recording(call_cid, b"x")))
    assert stream_file is not None
    recorded = record_file(runtime.archive, runtime.ledger, stream_file)
    assert recorded.transfer_ids == [] and recorded.to_queue == [recorded.file_id]
    return recorded.file_id


def test_resolving_asks_stream_once_per_call_and_records_the_transfers(runtime: Runtime, fake: FakeStream) -> None:
    fake.add_call("default", "routed", custom={"archive_storage": ["a", "b"]})
    first, second = deliver(runtime, fake, "default:routed"), deliver(runtime, fake, "default:routed")
    assert len(resolve_file(runtime, first)) == 2
    assert len(resolve_file(runtime, second)) == 2
    assert resolve_file(runtime, first) == []  # already routed
    assert [r.path for r in fake.api_requests].count("/api/v2/video/call/default/routed") == 1
    assert runtime.ledger.file(first)["routing"] == "resolved"
    assert runtime.ledger.redis.zscore("archiver:unrouted", first) is None


def test_while_stream_is_down_the_file_waits_and_keeps_its_place(runtime: Runtime, fake: FakeStream) -> None:
    fake.fail_next_api("/video/call/default/down", 503, count=100)
    runtime.stream._sleep = lambda _: None  # the client's own retries need not take real time here
    file_id = deliver(runtime, fake, "default:down")
    assert resolve_file(runtime, file_id) == []
    record = runtime.ledger.file(file_id)
    assert record["routing"] == "pending" and "503" in record["routing_error"]
    assert record["routing_attempts"] == "1" and int(record["routing_tried_at"]) <= now_ms()  # shown by list
    due = runtime.ledger.redis.zscore("archiver:unrouted", file_id)
    assert due is not None and due > now_ms()
