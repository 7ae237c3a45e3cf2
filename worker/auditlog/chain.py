"""The chain: queued entries (``auditlog:pending``) sealed in order, each with its `seq`, the hash of
the entry before it (`prev`) and its own `hash` (`worker.auditlog.canonical`).

Redis's Lua has no SHA-256, so Python hashes and one script commits: `chain_pending` reads the head
(seq and hash of the last entry) and the oldest queued entries, seals them, and `APPEND` takes them off
the queue and appends them to ``auditlog:chain`` only if the head is still the one they were sealed
after and the queue still starts with exactly those entries (a compare-and-set). So any number of
processes may chain at once: one wins, the others read again. A crash before `APPEND` changes
nothing; `APPEND` is one atomic step: an entry is never lost nor chained twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from worker.auditlog.canonical import GENESIS, dumps, seal
from worker.clock import now_ms
from worker.ledger.store import Ledger

BATCH = 500  # entries sealed per script

# ARGV: prefix, expected_seq, expected_hash, new_seq, new_hash, n, raw_1..raw_n, line_1..line_n
#   ->  1 appended | 0 the head moved (another process chained first) | -1 the queue does not start with raw_1..n
APPEND = """
local p, n = ARGV[1], tonumber(ARGV[6])
local head, pending = p .. 'auditlog:head', p .. 'auditlog:pending'
local h = redis.call('HMGET', head, 'seq', 'hash')
if (h[1] or '0') ~= ARGV[2] or (h[2] or string.rep('0', 64)) ~= ARGV[3] then return 0 end
local queued = redis.call('LRANGE', pending, 0, n - 1)
if #queued ~= n then return -1 end
for i = 1, n do if queued[i] ~= ARGV[6 + i] then return -1 end end
redis.call('LTRIM', pending, n, -1)
redis.call('RPUSH', p .. 'auditlog:chain', unpack(ARGV, 7 + n, 6 + 2 * n))
redis.call('HSET', head, 'seq', ARGV[4], 'hash', ARGV[5])
return 1
"""


@dataclass(frozen=True)
class Head:
    """The chain's last entry (seq 0 and `GENESIS` before the first) and its last export."""

    seq: int = 0
    hash: str = GENESIS
    exported_seq: int = 0
    exported_hash: str = GENESIS
    exported_key: str | None = None
    exported_at: int | None = None  # ms
    exporting: str | None = None  # JSON: the export under way (`worker.auditlog.export`)

    @classmethod
    def read(cls, ledger: Ledger) -> Head:
        return cls.from_hash(cast(dict[str, str], ledger.redis.hgetall(ledger.keys.auditlog_head)))

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> Head:
        return cls(int(h.get("seq", 0)), h.get("hash", GENESIS), int(h.get("exported_seq", 0)),
                   h.get("exported_hash", GENESIS), h.get("exported_key"),
                   int(h["exported_at"]) if "exported_at" in h else None, h.get("exporting"))


def chain_pending(ledger: Ledger, batch: int = BATCH) -> int:
    """Seal every entry queued now into the chain, in the order queued; how many this process sealed
    (others chaining at the same time seal the rest). Raises redis errors: what was appended before
    stays appended, the rest stays queued."""
    script = ledger.redis.register_script(APPEND)
    sealed = 0
    while True:
        raws = [str(r) for r in cast(list[Any], ledger.redis.lrange(ledger.keys.auditlog_pending, 0, batch - 1))]
        if not raws:
            return sealed
        head = Head.read(ledger)
        lines: list[str] = []
        prev, now = head.hash, now_ms()
        for offset, raw in enumerate(raws, start=1):
            entry = seal(raw, head.seq + offset, prev, now)
            lines.append(dumps(entry))
            prev = entry["hash"]
        args: list[str | int] = [ledger.prefix, head.seq, head.hash, head.seq + len(raws), prev, len(raws), *raws,
                                 *lines]
        if int(cast(int, script(args=args))) == 1:
            sealed += len(raws)


def chained(ledger: Ledger) -> list[dict[str, Any]]:
    """The entries chained and not exported yet, oldest first."""
    return [json.loads(line) for line in cast(list[str], ledger.redis.lrange(ledger.keys.auditlog_chain, 0, -1))]
