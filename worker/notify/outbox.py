"""The outbox of notifications in Redis: events, their deliveries (one per endpoint) and attempts.

The ledger's scripts write an event and its deliveries in the same step as the change it announces
(`worker.ledger.announce`, given `routes_json`), so a crash between the two loses nothing.
An event's id is deterministic per (type, subject): announcing the same change again writes nothing.
The keys are those of `worker.ledger.keys` (``notify:…``). A delivery::

    pending ──claim──▶ delivering ──▶ delivered
      ▲                    │  └─────▶ failed   (notify_retry_for passed, or its endpoint is gone;
      └──── backoff ───────┘                    `archiver notifications retry` makes it pending again)

A delivery being delivered holds a lease with a random token, like a transfer: a second worker
does not send the same attempt, and one whose worker died is due again when the lease runs out.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from config import ArchiveConfig
from config.notify import NotifyConfig
from worker.clock import from_ms, now_ms, rfc3339
from worker.ledger import scripts as lua
from worker.ledger.store import Ledger

STATES = ("pending", "delivering", "delivered", "failed")
OUTCOMES = ("delivered", "retried", "failed")

# ARGV: prefix, did, token, lease_ms  ->  {status, attempt}; status: claimed | missing | not_due |
# busy (another worker is delivering it) | delivered | failed. An attempt whose worker died (its lease
# ran out) is recorded as abandoned.
CLAIM = lua.NOW + """
local p, did, lease = ARGV[1], ARGV[2], tonumber(ARGV[4])
local dkey = p .. 'notify:delivery:' .. did
local d = redis.call('HMGET', dkey, 'state', 'lease_until', 'next_at')
if not d[1] then return {'missing', 0} end
if d[1] == 'delivering' then
  if tonumber(d[2] or '0') > now then return {'busy', 0} end
  redis.call('RPUSH', p .. 'notify:attempts:' .. did,
             cjson.encode({at = tonumber(d[2]) - lease, error = 'abandoned: its worker stopped before an answer'}))
elseif d[1] ~= 'pending' then
  return {d[1], 0}
elseif tonumber(d[3] or '0') > now then
  return {'not_due', 0}
end
local attempt = redis.call('HINCRBY', dkey, 'attempts', 1)
redis.call('HSET', dkey, 'state', 'delivering', 'lease_token', ARGV[3], 'lease_until', now + lease, 'updated_at', now)
redis.call('ZREM', p .. 'notify:state:' .. d[1], did)
redis.call('ZADD', p .. 'notify:state:delivering', now, did)
redis.call('ZADD', p .. 'notify:due', now + lease, did)
return {'claimed', attempt}
"""

# ARGV: prefix, did, token, ok ('1' | '0'), status ('' = no answer), error, retry_in_ms, give_up ('1' | '0')
#   ->  delivered | pending (tried again retry_in_ms from now, never past give_up_at) | failed | fenced
FINISH = lua.NOW + """
local p, did = ARGV[1], ARGV[2]
local dkey = p .. 'notify:delivery:' .. did
local d = redis.call('HMGET', dkey, 'state', 'lease_token', 'give_up_at')
if d[1] ~= 'delivering' or d[2] ~= ARGV[3] then return 'fenced' end
local attempt = {at = now, status = tonumber(ARGV[5]), error = ARGV[6]}
redis.call('RPUSH', p .. 'notify:attempts:' .. did, cjson.encode(attempt))
local give_up_at = tonumber(d[3] or '0')
local new, outcome = 'pending', 'retried'
if ARGV[4] == '1' then new, outcome = 'delivered', 'delivered'
elseif ARGV[8] == '1' or now >= give_up_at then new, outcome = 'failed', 'failed' end
redis.call('HSET', dkey, 'state', new, 'updated_at', now, 'last_status', ARGV[5], 'last_error', ARGV[6])
redis.call('HDEL', dkey, 'lease_token', 'lease_until')
redis.call('ZREM', p .. 'notify:state:delivering', did)
redis.call('ZADD', p .. 'notify:state:' .. new, now, did)
redis.call('HINCRBY', p .. 'notify:outcomes', outcome, 1)
if new == 'pending' then
  local at = math.min(now + tonumber(ARGV[7]), give_up_at)
  redis.call('HSET', dkey, 'next_at', at)
  redis.call('ZADD', p .. 'notify:due', at, did)
else
  redis.call('ZREM', p .. 'notify:due', did)
end
return new
"""

# ARGV: prefix, did, retry_for_ms  ->  1 if a failed (or delivered) delivery is pending again, due now
RETRY = lua.NOW + """
local p, did = ARGV[1], ARGV[2]
local dkey = p .. 'notify:delivery:' .. did
local state = redis.call('HGET', dkey, 'state')
if state ~= 'failed' and state ~= 'delivered' then return 0 end
redis.call('HSET', dkey, 'state', 'pending', 'updated_at', now, 'next_at', now, 'give_up_at', now + tonumber(ARGV[3]))
redis.call('ZREM', p .. 'notify:state:' .. state, did)
redis.call('ZADD', p .. 'notify:state:pending', now, did)
redis.call('ZADD', p .. 'notify:due', now, did)
return 1
"""

# ARGV: prefix, delivered_before_ms, limit  ->  deliveries forgotten
# Forget deliveries delivered before the cutoff (their hash, attempts and index entries), and each
# event with the last of its deliveries.
FORGET_DELIVERED = """
local p = ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', p .. 'notify:state:delivered', '-inf', tonumber(ARGV[2]), 'LIMIT', 0,
                       tonumber(ARGV[3]))
for _, did in ipairs(ids) do
  local eid = redis.call('HGET', p .. 'notify:delivery:' .. did, 'event_id')
  redis.call('DEL', p .. 'notify:delivery:' .. did, p .. 'notify:attempts:' .. did)
  redis.call('ZREM', p .. 'notify:state:delivered', did)
  if eid then
    local ekey, left = p .. 'notify:event:' .. eid, 0
    for other in string.gmatch(redis.call('HGET', ekey, 'deliveries') or '', '[^,]+') do
      left = left + redis.call('EXISTS', p .. 'notify:delivery:' .. other)
    end
    if left == 0 then redis.call('DEL', ekey) end
  end
end
return #ids
"""


def event_id(event_type: str, subject: str) -> str:
    """The id ANNOUNCE gives the event of `event_type` about `subject` (a transfer id…)."""
    return "ev_" + hashlib.sha1(f"{event_type}:{subject}".encode()).hexdigest()[:24]  # noqa: S324 - an id, not a MAC


def endpoint_id(url: str) -> str:
    """An endpoint's name in the outbox: a digest of its URL (the URL itself may hold a secret)."""
    return hashlib.sha256(url.encode()).hexdigest()[:12]


def routes_json(archive: ArchiveConfig) -> str:
    """What the ledger's scripts need to announce: each endpoint's id and events ('' with none)."""
    if not archive.notify:
        return ""
    return json.dumps({
        "retry_ms": int(archive.notify_retry_for.total_seconds() * 1000),
        "endpoints": [{"id": endpoint_id(n.url), "events": list(n.events)} for n in archive.notify],
    })


def endpoints(archive: ArchiveConfig) -> dict[str, NotifyConfig]:
    """The configured endpoints by id."""
    return {endpoint_id(n.url): n for n in archive.notify}


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    subject: str
    created_at: datetime | None
    data: dict[str, Any]

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> Event:
        return cls(h["id"], h.get("type", ""), h.get("subject", ""), from_ms(h.get("created_at")),
                   json.loads(h.get("data") or "{}"))


@dataclass(frozen=True)
class Delivery:
    """One event to one endpoint, as the outbox holds it."""

    id: str
    event_id: str
    endpoint: str
    state: str
    attempts: int
    created_at: datetime | None
    updated_at: datetime | None
    next_at: datetime | None
    give_up_at: datetime | None
    last_status: int | None
    last_error: str | None
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_hash(cls, h: dict[str, str], history: list[dict[str, Any]]) -> Delivery:
        status = h.get("last_status") or ""
        return cls(h["id"], h.get("event_id", ""), h.get("endpoint", ""), h.get("state", ""), int(h.get("attempts", 0)),
                   from_ms(h.get("created_at")), from_ms(h.get("updated_at")), from_ms(h.get("next_at")),
                   from_ms(h.get("give_up_at")), int(status) if status.isdigit() else None, h.get("last_error") or None,
                   history)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "event_id": self.event_id, "endpoint": self.endpoint, "state": self.state,
            "attempts": self.attempts, "created_at": rfc3339(self.created_at), "updated_at": rfc3339(self.updated_at),
            "next_at": rfc3339(self.next_at), "give_up_at": rfc3339(self.give_up_at),
            "last_status": self.last_status, "last_error": self.last_error,
            "history": [{**a, "at": rfc3339(from_ms(a.get("at")))} for a in self.history],
        }


@dataclass(frozen=True)
class Claimed:
    status: str
    attempt: int = 0
    token: str = ""

    @property
    def claimed(self) -> bool:
        return self.status == "claimed"


class Outbox:
    """The notifications' keys and scripts, over the ledger's Redis."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.redis = ledger.redis
        self.keys = ledger.keys
        self._claim = self.redis.register_script(CLAIM)
        self._finish = self.redis.register_script(FINISH)
        self._retry = self.redis.register_script(RETRY)
        self._forget = self.redis.register_script(FORGET_DELIVERED)

    # -- writing -------------------------------------------------------------------------------

    def claim(self, delivery_id: str, lease_ms: int) -> Claimed:
        token = secrets.token_hex(16)
        status, attempt = cast(list[Any], self._claim(args=[self.ledger.prefix, delivery_id, token, lease_ms]))
        return Claimed(str(status), int(attempt), token if str(status) == "claimed" else "")

    def finish(self, delivery_id: str, token: str, *, ok: bool, status: int | None = None, error: str = "",
               retry_in_ms: int = 0, give_up: bool = False) -> str:
        """Record one attempt; the delivery's new state (``fenced``: the lease was taken over)."""
        return str(self._finish(args=[self.ledger.prefix, delivery_id, token, "1" if ok else "0",
                                      "" if status is None else status, error, retry_in_ms, "1" if give_up else "0"]))

    def retry(self, delivery_id: str, retry_for_ms: int) -> bool:
        """Make a failed (or delivered) delivery pending again, due now, retried for `retry_for_ms`."""
        return bool(self._retry(args=[self.ledger.prefix, delivery_id, retry_for_ms]))

    def forget_delivered(self, older_than_ms: int, batch: int = 500) -> int:
        """Forget deliveries delivered more than `older_than_ms` ago (by this process's clock), and
        their events once none of their deliveries is left; how many deliveries."""
        cutoff, total = now_ms() - older_than_ms, 0
        while (forgotten := int(cast(int, self._forget(args=[self.ledger.prefix, cutoff, batch])))) > 0:
            total += forgotten
            if forgotten < batch:
                break
        return total

    # -- reading -------------------------------------------------------------------------------

    def event(self, eid: str) -> Event | None:
        h = cast(dict[str, str], self.redis.hgetall(self.keys.notify_event(eid)))
        return Event.from_hash(h) if h else None

    def delivery(self, delivery_id: str) -> Delivery | None:
        h = cast(dict[str, str], self.redis.hgetall(self.keys.notify_delivery(delivery_id)))
        if not h:
            return None
        raw = cast(list[str], self.redis.lrange(self.keys.notify_attempts(delivery_id), 0, -1))
        return Delivery.from_hash(h, [json.loads(a) for a in raw])

    def deliveries_of(self, eid: str) -> list[str]:
        """The ids of the event's deliveries (one per endpoint that wanted it)."""
        raw = cast(str | None, self.redis.hget(self.keys.notify_event(eid), "deliveries"))
        return [d for d in (raw or "").split(",") if d]

    def due_for(self, event_type: str, subject: str) -> list[str]:
        """The pending deliveries of the event about `subject`: to hand to the workers at once."""
        ids = self.deliveries_of(event_id(event_type, subject))
        if not ids:
            return []
        scores = self.redis.zmscore(self.keys.notify_state("pending"), ids)
        return [d for d, score in zip(ids, scores, strict=True) if score is not None]

    def ids(self, state: str | None = None) -> list[str]:
        """Delivery ids, oldest update first: of one state, or of every state."""
        states = [state] if state else list(STATES)
        found: list[tuple[float, str]] = []
        for s in states:
            rows = self.redis.zrange(self.keys.notify_state(s), 0, -1, withscores=True)
            found += [(score, str(d)) for d, score in cast(list[tuple[str, float]], rows)]
        return [d for _, d in sorted(found)]

    def iter_deliveries(self, state: str | None = None) -> Iterator[Delivery]:
        for did in self.ids(state):
            found = self.delivery(did)
            if found is not None:
                yield found

    def counts(self) -> dict[str, int]:
        """Deliveries by state."""
        pipe = self.redis.pipeline(transaction=False)
        for state in STATES:
            pipe.zcard(self.keys.notify_state(state))
        return dict(zip(STATES, (int(n) for n in pipe.execute()), strict=True))

    def outcomes(self) -> dict[str, int]:
        """Attempts by outcome, since the ledger began (`OUTCOMES`)."""
        raw = cast(dict[str, str], self.redis.hgetall(self.keys.notify_outcomes))
        return {outcome: int(raw.get(outcome, 0)) for outcome in OUTCOMES}
