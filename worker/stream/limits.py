"""Stream's rate limits: one budget for every Stream API request of every process (stream-api.md §3, §9).

Stream limits requests per app, per endpoint, per minute, and per second (the minute's limit / 30);
the app's own backend spends the same budget. Every answer says ``X-RateLimit-Limit`` (the minute's
limit), ``-Remaining`` and ``-Reset`` (unix seconds). The archiver spends at most ``api_share`` of
each endpoint's limit in any sliding minute, and of its per-second limit in any sliding second,
together across all its processes: the budget lives in Redis and one Lua script decides, on Redis'
clock (``TIME``), whether a request may go now or how long it must wait.

Keys (prefix P, default ``archiver:``; E = the endpoint, method and path template, e.g.
``GET /api/v2/video/call/{type}/{id}``), each expiring on its own:

  P stream_api:state:E    HASH  limit (-1: answers carry none), hold_until (ms: nobody sends before,
                                after a 429 or when Remaining hit 0), probe_until (ms: the one request
                                sent while the limit is unknown); forgotten 10 minutes after the last answer
  P stream_api:minute:E   ZSET  requests sent in the last minute (score: ms)
  P stream_api:second:E   ZSET  requests sent in the last second (or longer, when the per-second share is < 1)

Before the first answer says the limit, one request at a time goes (a probe) and the others wait
for what it learns. Where answers carry no ``X-RateLimit-*`` headers, only 429s slow requests down.
When Redis cannot be reached, requests go unmetered (429s still slow them) rather than stop.
"""

from __future__ import annotations

import email.utils
import itertools
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, cast

import redis
import structlog

from worker.ledger.keys import DEFAULT_PREFIX, Keys
from worker.ledger.scripts import NOW

log = structlog.get_logger(__name__)

MINUTE = 60.0
# Seconds a request stays counted past its window: it reaches Stream a little after we count it, and
# must not land in the next window together with its successor.
MARGIN = 0.1
PROBE_TIMEOUT = 15.0  # a probe that never answered (its process died) stops blocking after this
STATE_TTL = 600.0  # a limit not confirmed by an answer for this long is learnt again
MAX_HOLD = 300.0  # the longest one wait after a 429 (Stream's windows are a minute; longer is re-checked)

# Method and path template of the endpoints the archiver calls; other paths are their own endpoint.
_SEGMENT = "[^/]+"
_TEMPLATES = tuple((re.compile("^" + re.sub(r"\{\w+\}", _SEGMENT, template) + "$"), template) for template in (
    "/api/v2/video/call/{type}/{id}/{session}/recordings/{filename}",
    "/api/v2/video/call/{type}/{id}/{session}/transcriptions/{filename}",
    "/api/v2/video/call/{type}/{id}/recordings",
    "/api/v2/video/call/{type}/{id}/transcriptions",
    "/api/v2/video/call/{type}/{id}/report",
    "/api/v2/video/call/{type}/{id}",
    "/api/v2/video/calls",
))


def endpoint_of(method: str, path: str) -> str:
    """The endpoint a request counts against: ``GET /api/v2/video/call/{type}/{id}``, not per call."""
    path = path.split("?", 1)[0]
    template = next((t for pattern, t in _TEMPLATES if pattern.match(path)), path)
    return f"{method.upper()} {template}"


@dataclass(frozen=True)
class RateHeaders:
    """An answer's ``X-RateLimit-*``: the minute's limit, what is left of it, and when it resets."""

    limit: int
    remaining: int
    reset: float  # unix seconds


def _first(value: str | None) -> str:
    """The first non-empty value of a header that proxies may have joined with commas (as the SDK reads it)."""
    return next((part.strip() for part in (value or "").split(",") if part.strip()), "")


def rate_headers(headers: Mapping[str, str]) -> RateHeaders | None:
    """The answer's X-RateLimit-* (names in any case), or None unless all three are there and numbers."""
    try:
        return RateHeaders(int(_first(headers.get("x-ratelimit-limit"))),
                           int(_first(headers.get("x-ratelimit-remaining"))),
                           float(_first(headers.get("x-ratelimit-reset"))))
    except ValueError:
        return None


def _http_date(value: str) -> float | None:
    """Unix time of an HTTP date (the first, when several were joined with commas), or None."""
    for candidate in (value, value.split("GMT", 1)[0] + "GMT"):
        try:
            moment = email.utils.parsedate_to_datetime(candidate.strip())
        except (TypeError, ValueError, IndexError):
            continue
        return moment.timestamp()
    return None


def retry_wait(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds a 429 asks us to wait: ``Retry-After`` as seconds or an HTTP date, else until
    ``X-RateLimit-Reset``; None when the answer says neither."""
    now = time.time() if now is None else now
    raw = (headers.get("retry-after") or "").strip()
    seconds = _first(raw)
    if re.fullmatch(r"\d+(\.\d+)?", seconds):
        return float(seconds)
    moment = _http_date(raw) if raw else None
    if moment is None:
        reset = _first(headers.get("x-ratelimit-reset"))
        moment = float(reset) if re.fullmatch(r"\d+(\.\d+)?", reset) else None
    return None if moment is None else max(0.0, moment - now)


class Budget(Protocol):
    """Decides when a request to an endpoint may go, and learns from each answer."""

    def wait(self, endpoint: str) -> float:
        """0 when a request may go now (it is then counted), else the seconds to wait before asking again."""
        ...

    def answered(self, endpoint: str, rate: RateHeaders | None, *, hold: float = 0.0, learn: bool = True) -> None:
        """An answer came (or none: `learn` False): remember its limit (None with `learn`: the answers
        carry none), and let nobody send for `hold` seconds (a 429)."""
        ...


class Unmetered:
    """No shared budget (a client without Redis): requests go at once; the client waits out 429s itself."""

    def wait(self, endpoint: str) -> float:
        return 0.0

    def answered(self, endpoint: str, rate: RateHeaders | None, *, hold: float = 0.0, learn: bool = True) -> None:
        return None


_ACQUIRE = NOW + """
local share, window, margin = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'limit', 'hold_until', 'probe_until')
local hold = tonumber(state[2]) or 0
if hold > now then return hold - now end
local limit = tonumber(state[1])
if limit ~= nil and limit < 0 then return 0 end
local spans, caps = {window + margin, 0}, {0, 0}
if limit == nil then
  local probe = tonumber(state[3]) or 0
  if probe > now then return math.min(probe - now, 50) end
  redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[4]))
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[6]))
else
  local second = window / 60
  local per_second = limit * share / 30
  caps[1] = math.max(1, math.floor(limit * share))
  if per_second >= 1 then
    spans[2], caps[2] = second + margin, math.floor(per_second)
  else
    spans[2], caps[2] = math.ceil(second / per_second) + margin, 1
  end
  local wait = 0
  for i = 1, 2 do
    redis.call('ZREMRANGEBYSCORE', KEYS[i + 1], '-inf', now - spans[i])
    local count = redis.call('ZCARD', KEYS[i + 1])
    if count >= caps[i] then
      local oldest = redis.call('ZRANGE', KEYS[i + 1], count - caps[i], count - caps[i], 'WITHSCORES')
      wait = math.max(wait, tonumber(oldest[2]) + spans[i] - now)
    end
  end
  if wait > 0 then return wait end
end
for i = 1, 2 do
  redis.call('ZADD', KEYS[i + 1], now, ARGV[5])
  redis.call('PEXPIRE', KEYS[i + 1], math.ceil(window + margin))
end
return 0
"""

_ANSWERED = NOW + """
redis.call('HDEL', KEYS[1], 'probe_until')
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], 'limit', ARGV[1]) end
local hold = tonumber(ARGV[2])
if hold > 0 then
  local current = tonumber(redis.call('HGET', KEYS[1], 'hold_until')) or 0
  if now + hold > current then redis.call('HSET', KEYS[1], 'hold_until', now + hold) end
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 0
"""


class SharedBudget:
    """The budget in Redis, shared by every process that uses the same Redis and prefix.

    `window` is a test-only knob (seconds in a "minute"; a "second" is window / 60): users set
    `api_share`, never the window."""

    def __init__(self, client: redis.Redis, share: float, prefix: str = DEFAULT_PREFIX, *,
                 window: float = MINUTE) -> None:
        if not 0 < share <= 1:
            raise ValueError("share must be in (0, 1]")
        self._redis, self._share, self._keys, self._window = client, share, Keys(prefix), window
        self._acquire = client.register_script(_ACQUIRE)
        self._answered = client.register_script(_ANSWERED)
        self._ids = (f"{uuid.uuid4().hex}:{n}" for n in itertools.count())
        self._offline = False

    def wait(self, endpoint: str) -> float:
        args: list[str | int | float] = [self._share, int(self._window * 1000), int(MARGIN * 1000),
                                         int(PROBE_TIMEOUT * 1000), next(self._ids), int(STATE_TTL * 1000)]
        try:
            waited_ms = cast(int, self._acquire(keys=self._keys.stream_api(endpoint), args=args))
        except redis.RedisError as exc:
            self._went_offline(exc)
            return 0.0
        self._offline = False
        return max(0, int(waited_ms)) / 1000

    def answered(self, endpoint: str, rate: RateHeaders | None, *, hold: float = 0.0, learn: bool = True) -> None:
        limit = str(rate.limit) if rate is not None else ("-1" if learn else "")
        if rate is not None and rate.remaining <= 0:  # the minute is spent (the app's backend shares it)
            hold = max(hold, rate.reset - time.time())
        args: list[str | int | float] = [limit, int(min(hold, MAX_HOLD) * 1000), int(STATE_TTL * 1000)]
        try:
            self._answered(keys=self._keys.stream_api(endpoint)[:1], args=args)
        except redis.RedisError as exc:
            self._went_offline(exc)

    def _went_offline(self, exc: redis.RedisError) -> None:
        if not self._offline:
            log.warning("stream_api_budget_unavailable", error=str(exc),
                        note="Stream API requests go unmetered until Redis answers again")
        self._offline = True

