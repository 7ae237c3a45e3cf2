"""The chain (worker/auditlog/chain.py) against a real Redis: entries sealed in the order noted, each
linked to the one before; several chainers at once (threads, processes) and a crash between reading and
appending neither lose nor duplicate an entry."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import redis

from tests.unit.auditlog.conftest import note_many
from worker.auditlog import note
from worker.auditlog.canonical import GENESIS, dumps, entry_hash, seal
from worker.auditlog.chain import APPEND, Head, chain_pending, chained
from worker.clock import now_ms
from worker.ledger.audit_entries import pending_entry
from worker.ledger.store import Ledger


def assert_linked(entries: list[dict[str, Any]], first_seq: int = 1, prev: str = GENESIS) -> None:
    """Seqs from `first_seq` without a gap, each prev the hash before, each hash its fields'."""
    for offset, entry in enumerate(entries):
        assert entry["seq"] == first_seq + offset
        assert entry["prev"] == prev and entry["hash"] == entry_hash(entry)
        prev = entry["hash"]


def test_entries_are_sealed_in_the_order_noted_and_linked(ledger: Ledger) -> None:
    note_many(ledger, 3)
    assert chain_pending(ledger) == 3
    entries = chained(ledger)
    assert [e["call_cid"] for e in entries] == ["default:c0", "default:c1", "default:c2"]
    assert_linked(entries)
    head = Head.read(ledger)
    assert (head.seq, head.hash) == (3, entries[-1]["hash"])
    assert ledger.redis.llen(ledger.keys.auditlog_pending) == 0
    assert all(e["actor"] == "archiver" and e["action"] == "hold" for e in entries)


def test_a_later_chaining_goes_on_from_the_head(ledger: Ledger) -> None:
    note_many(ledger, 2)
    chain_pending(ledger)
    note_many(ledger, 2, start=2)
    assert chain_pending(ledger) == 2
    assert_linked(chained(ledger))
    assert chain_pending(ledger) == 0  # nothing queued: nothing done


def test_a_backlog_larger_than_a_batch_is_sealed_in_several_steps(ledger: Ledger) -> None:
    note_many(ledger, 23)
    assert chain_pending(ledger, batch=5) == 23
    entries = chained(ledger)
    assert len(entries) == 23 and [e["call_cid"] for e in entries] == [f"default:c{n}" for n in range(23)]
    assert_linked(entries)


def test_the_exported_line_is_the_canonical_json_with_the_hash(ledger: Ledger) -> None:
    note(ledger, "hold", call_cid="défaut:ü", reason="Gericht 7")
    chain_pending(ledger)
    (line,) = ledger.redis.lrange(ledger.keys.auditlog_chain, 0, -1)
    entry = json.loads(line)
    assert line == dumps(entry) and line.isascii() and "\\u00e9" in line
    fields = {k: v for k, v in entry.items() if k != "hash"}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    assert entry["hash"] == hashlib.sha256(canonical).hexdigest()


def test_an_entry_that_is_not_one_is_chained_as_unreadable_never_dropped(ledger: Ledger) -> None:
    pending = ledger.keys.auditlog_pending
    ledger.redis.rpush(pending, "not json", '{"seq": 9, "action": "x"}', "[1, 2]", '{"action": "ok", "at": 1e+14}')
    assert chain_pending(ledger) == 4
    entries = chained(ledger)
    assert [e["action"] for e in entries] == ["unreadable", "unreadable", "unreadable", "ok"]
    assert entries[0]["raw"] == "not json" and entries[1]["raw"] == '{"seq": 9, "action": "x"}'
    assert entries[3]["at"] == 10 ** 14 and isinstance(entries[3]["at"], int)  # cjson's spelling of an integer
    assert_linked(entries)


def test_an_append_sealed_after_a_head_that_moved_is_refused(ledger: Ledger) -> None:
    """The seam: a chainer read the head and the queue, then another chained first. Its append is
    refused, nothing is duplicated, and chaining again seals what is left."""
    note_many(ledger, 2)
    stale_raws = ledger.redis.lrange(ledger.keys.auditlog_pending, 0, -1)
    stale = [seal(raw, n, GENESIS, now_ms()) for n, raw in enumerate(stale_raws, start=1)]
    assert chain_pending(ledger) == 2  # the other process wins
    note_many(ledger, 1, start=2)
    script = ledger.redis.register_script(APPEND)
    args = [ledger.prefix, 0, GENESIS, 2, stale[-1]["hash"], 2, *stale_raws, *(dumps(e) for e in stale)]
    assert script(args=args) == 0  # the head moved
    head = Head.read(ledger)
    args = [ledger.prefix, head.seq, head.hash, head.seq + 2, "x" * 64, 2, *stale_raws, *(dumps(e) for e in stale)]
    assert script(args=args) == -1  # right head, but the queue no longer starts with those entries
    assert chain_pending(ledger) == 1
    entries = chained(ledger)
    assert [e["call_cid"] for e in entries] == ["default:c0", "default:c1", "default:c2"]
    assert_linked(entries)


def test_threads_noting_and_chaining_at_once_lose_and_duplicate_nothing(ledger: Ledger, redis_url: str) -> None:
    writers, per_writer, chainers = 4, 150, 4
    stop = threading.Event()

    def write(w: int) -> None:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        mine = Ledger(client)
        for n in range(per_writer):
            note(mine, "hold", call_cid=f"default:w{w}", reason=str(n))
        client.close()

    def chain() -> None:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        mine = Ledger(client)
        while not stop.is_set():
            chain_pending(mine, batch=7)
        chain_pending(mine, batch=7)
        client.close()

    chain_threads = [threading.Thread(target=chain) for _ in range(chainers)]
    write_threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in chain_threads + write_threads:
        thread.start()
    for thread in write_threads:
        thread.join()
    stop.set()
    for thread in chain_threads:
        thread.join()
    chain_pending(ledger)
    entries = chained(ledger)
    assert len(entries) == writers * per_writer
    assert_linked(entries)
    for w in range(writers):  # each writer's entries in the order it noted them
        assert [e["reason"] for e in entries if e["call_cid"] == f"default:w{w}"] == [str(n) for n in
                                                                                       range(per_writer)]


BACKLOG = 20_000
CHAINER = """
import sys, redis
from worker.auditlog.chain import chain_pending
from worker.ledger.store import Ledger
ledger = Ledger(redis.Redis.from_url(sys.argv[1], decode_responses=True))
print("ready", flush=True)
while True:
    chain_pending(ledger, batch=3)
"""


def test_chainers_killed_mid_run_leave_every_entry_chained_once(ledger: Ledger, redis_url: str) -> None:
    """Processes chaining a backlog, SIGKILLed at arbitrary moments, then one chaining what is left:
    every entry is in the chain exactly once, in the order noted, linked."""
    entries_noted = [pending_entry("hold", now_ms(), {"call_cid": f"default:c{n}"}) for n in range(BACKLOG)]
    ledger.redis.rpush(ledger.keys.auditlog_pending, *entries_noted)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    remaining: list[int] = []
    for _ in range(4):
        procs = [subprocess.Popen([sys.executable, "-c", CHAINER, redis_url], env=env, stdout=subprocess.PIPE,
                                  text=True) for _ in range(2)]
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        before = ledger.redis.llen(ledger.keys.auditlog_pending)
        deadline = time.monotonic() + 30
        while ledger.redis.llen(ledger.keys.auditlog_pending) > before - 300 and time.monotonic() < deadline:
            time.sleep(0.001)  # killed once they chained some, mid-batch or between batches
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            assert proc.stdout is not None
            proc.stdout.close()
        remaining.append(ledger.redis.llen(ledger.keys.auditlog_pending))
    assert remaining[0] < BACKLOG and remaining[-1] > 0, remaining  # killed while chaining, with work left
    chain_pending(ledger)
    entries = chained(ledger)
    assert [e["call_cid"] for e in entries] == [f"default:c{n}" for n in range(BACKLOG)]
    assert_linked(entries)
