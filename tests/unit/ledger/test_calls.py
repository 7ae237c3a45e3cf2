"""A call's files and transfers (worker/ledger/calls.py), found through the index the intake keeps."""

from __future__ import annotations

from dataclasses import replace

from tests.support.ledger_states import a_file, add, add_waiting
from worker.ledger.calls import Manifest, manifests_of, read_call, session_event, split_query
from worker.ledger.store import Ledger


def test_a_search_is_a_cid_or_an_id_alone() -> None:
    assert split_query(" default:abc ") == ("abc", "default:abc")
    assert split_query("abc") == ("abc", None)
    assert split_query("livestream:a:b") == ("a:b", "livestream:a:b")


def test_a_call_is_its_files_each_with_its_transfers_by_session(ledger: Ledger) -> None:
    add(ledger, "c1", "archived", storages=("disk", "s3"))
    add(ledger, "c2", "failed")
    call = read_call(ledger, "default:c1")
    assert call.call_cids == ["default:c1"] and len(call.files) == 1
    (file,) = call.files
    assert [(t.storage, t.state, t.bytes, t.sha256) for t in file.transfers] == [
        ("disk", "archived", 1234, "ab" * 32), ("s3", "archived", 1234, "ab" * 32)]
    assert file.fields["filename"] == "rec_c1.mp4" and "url" not in file.fields  # never the signed URL
    assert list(call.sessions()) == [("default:c1", "s-c1")]
    assert read_call(ledger, "default:nope").files == () and read_call(ledger, " ").files == ()


def test_an_id_alone_finds_the_calls_of_every_type_and_a_cid_only_its_own(ledger: Ledger) -> None:
    add(ledger, "c1")
    other = replace(a_file("c1"), call_cid="livestream:c1")
    ledger.record(other, [], expires_at=other.end_time, route_in_ms=60_000)  # waits for its routes
    assert read_call(ledger, "c1").call_cids == ["default:c1", "livestream:c1"]
    (waiting,) = read_call(ledger, "livestream:c1").files
    assert waiting.transfers == () and waiting.state == "routing"


def test_files_waiting_for_routes_are_shown_and_the_list_is_bounded(ledger: Ledger) -> None:
    add_waiting(ledger, "w1")
    assert read_call(ledger, "w1").files[0].state == "routing"
    for n in range(3):
        ledger.record(replace(a_file("many"), filename=f"rec_many_{n}.mp4"), [], expires_at=a_file("x").end_time,
                      route_in_ms=0)
    call = read_call(ledger, "many", limit=2)
    assert len(call.files) == 2 and call.more == 1


def test_a_sessions_manifests_are_read_from_its_ledger_record(ledger: Ledger) -> None:
    assert manifests_of(ledger, "default:c1", "s1") == []  # none written yet
    ledger.redis.hset(ledger.keys.manifest("default:c1:s1"), mapping={
        "key": "default/c1/manifest_s1.json", "sha256": "cd" * 32, "storages": "disk,s3", "generation": 3})
    assert manifests_of(ledger, "default:c1", "s1") == [
        Manifest("disk", "default/c1/manifest_s1.json", "cd" * 32),
        Manifest("s3", "default/c1/manifest_s1.json", "cd" * 32)]
    assert session_event("default:c1", "s1") == ("session.archived", "default:c1:s1")  # as complete.py announces it
