"""The ledger's Lua scripts: every state change is one atomic script.

Each script is given the prefix (ARGV[1]) and spells the key names of `worker.ledger.keys` (where
the layout is documented) from it, as ``p .. 'transfer:' .. tid``; since the names are built inside
the scripts, the ledger needs one Redis (or a Sentinel-managed primary), not a cluster. Times are
integer milliseconds since the epoch.
"""

from worker.ledger.announce import ANNOUNCE
from worker.ledger.audit_entries import AUDIT_ENTRY

# Every script below judges leases, waits and due times by Redis's clock (`NOW`: TIME, in ms), never
# by the caller's: one worker or scheduler whose clock is off must not steal live leases, write leases
# already expired or drop other workers' max_concurrency slots. Callers pass durations, not times.
# (TIME before a write needs effects replication: the default from Redis 5, the only mode from 7.)
NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# The file index of a call (`call_files:<call id>`): a call's id is what follows the first ':' of its cid.
CALL_FILES = """
local function call_files(p, cid)
  local at = string.find(cid, ':', 1, true)
  return p .. 'call_files:' .. (at and string.sub(cid, at + 1) or cid)
end
"""

# The index of `archiver find` (`worker.ledger.index`; keys in `worker.ledger.keys`): a file is in its
# call's set (CALL_FILES), its call type's, its day's and each of its custom terms' sorted set, scored
# by its start_time (ms; its created_at when it has none). Its day is the UTC date of that time
# (`day_of`: the proleptic Gregorian calendar, from days since the epoch). Its custom terms are kept
# in its hash (field `custom`: a JSON array of "key=value", sorted; absent when none), so that
# removing it (`unindex_file`) needs nothing but the hash. Every function takes the file's key.
INDEX = CALL_FILES + """
local DAY_MS = 86400000
local function day_of(ms)
  local z = math.floor(ms / DAY_MS) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400 + (month <= 2 and 1 or 0)
  return string.format('%04d-%02d-%02d', year, month, doy - math.floor((153 * mp + 2) / 5) + 1)
end
local function indexed(fkey)
  local f = redis.call('HMGET', fkey, 'call_cid', 'start_time', 'created_at', 'custom')
  local at = tonumber(f[2] or '') or tonumber(f[3] or '')
  local cid = f[1]
  local colon = cid and string.find(cid, ':', 1, true)
  return cid, colon and string.sub(cid, 1, colon - 1) or cid, at, f[4] and cjson.decode(f[4]) or {}
end
local function index_file(p, fkey, fid)
  local cid, call_type, at, terms = indexed(fkey)
  if not cid then return 0 end
  redis.call('SADD', call_files(p, cid), fid)
  if not at then return 1 end
  local day = day_of(at)
  redis.call('ZADD', p .. 'index:type:' .. call_type, at, fid)
  redis.call('ZADD', p .. 'index:day:' .. day, at, fid)
  redis.call('ZADD', p .. 'index:days', at - at % DAY_MS, day)
  for _, term in ipairs(terms) do redis.call('ZADD', p .. 'index:custom:' .. term, at, fid) end
  return 1
end
local function unindex_file(p, fkey, fid)
  local cid, call_type, at, terms = indexed(fkey)
  if not cid then return 0 end
  redis.call('SREM', call_files(p, cid), fid)
  redis.call('ZREM', p .. 'index:type:' .. call_type, fid)
  for _, term in ipairs(terms) do redis.call('ZREM', p .. 'index:custom:' .. term, fid) end
  if at then
    local day = day_of(at)
    redis.call('ZREM', p .. 'index:day:' .. day, fid)
    if redis.call('EXISTS', p .. 'index:day:' .. day) == 0 then redis.call('ZREM', p .. 'index:days', day) end
  end
  return 1
end
-- The call's custom terms (terms_json: a JSON array, '[]' for none) become the file's, replacing
-- those it had (their entries are removed; index_file adds the new ones).
local function set_custom(p, fkey, fid, terms_json)
  local stored = redis.call('HGET', fkey, 'custom')
  if stored == terms_json or (not stored and terms_json == '[]') then return end
  if stored then
    for _, term in ipairs(cjson.decode(stored)) do redis.call('ZREM', p .. 'index:custom:' .. term, fid) end
  end
  if terms_json == '[]' then redis.call('HDEL', fkey, 'custom') else redis.call('HSET', fkey, 'custom', terms_json) end
end
"""

# ARGV: prefix, file_id, terms_json ('' = leave its custom terms as they are)  ->  1 if the file is
# recorded (and now indexed), 0 if not
INDEX_FILE = INDEX + """
local p, fid = ARGV[1], ARGV[2]
local fkey = p .. 'file:' .. fid
if redis.call('EXISTS', fkey) == 0 then return 0 end
if ARGV[3] ~= '' then set_custom(p, fkey, fid, ARGV[3]) end
return index_file(p, fkey, fid)
"""

# ARGV: prefix, file_id  ->  1 if the file was in the index (its record is left as it is)
UNINDEX_FILE = INDEX + """
return unindex_file(ARGV[1], ARGV[1] .. 'file:' .. ARGV[2], ARGV[2])
"""

# ARGV: prefix, file_id…  ->  for each file one JSON array: [call_cid, kind, custom (its terms' JSON),
# [the hash of each of its `archived` transfers, as HGETALL gives it]] ('' for what it lacks). Read-only:
# `archiver find` reads a page of files in one round trip and parses one string per file.
FIND_PAGE = """
local p, out = ARGV[1], {}
for i = 2, #ARGV do
  local fkey = p .. 'file:' .. ARGV[i]
  local f = redis.call('HMGET', fkey, 'call_cid', 'kind', 'custom')
  local archived = {}
  if f[1] then
    for _, tid in ipairs(redis.call('SMEMBERS', fkey .. ':transfers')) do
      local tkey = p .. 'transfer:' .. tid
      if redis.call('HGET', tkey, 'state') == 'archived' then archived[#archived + 1] = redis.call('HGETALL', tkey) end
    end
  end
  out[#out + 1] = cjson.encode({f[1] or '', f[2] or '', f[3] or '', archived})
end
return out
"""

# ARGV: prefix, dispatch_in_ms, file_json, transfers_json, route_in_ms, url_at, refuse_expired, custom
#   ->  {file_is_new, transfers_created, expired[, erased]}
# A file `archiver erase` erased (`erased:<fid>`) is refused: nothing is written, the answer is {0, 0, 0, 1}.
# Queued transfers are due dispatch_in_ms from now (Redis's clock, like every time it writes).
# route_in_ms '' means the transfers given are the file's routes; a duration means "route it that
# much later". With refuse_expired '1', a file whose expires_at has passed is refused: nothing is
# written, and the answer is {0, 0, 1} (a replayed or very late delivery).
# The file keeps the URL of the newest event: url_at is when the given URL was signed (the event's
# created_at, ms), stored as the file's url_at; a URL replaces the stored one only when it is newer
# than that, or none is stored. url_at '' is a URL Stream's API just listed: newer than any, so it
# is stored with a url_at past the stored one's and no earlier than now.
# A queued transfer takes its key in keyowner:<storage>; when another file owns that key already,
# it takes its alt_key (the key tagged with a hash of its file id) instead, and when that is taken
# too, it is recorded `failed` (never two files under one key).
# Every intake indexes the file (INDEX: by call, call type, day; a file recorded before the index is
# added when it is recorded again: a redelivery, a reconciliation); `custom` (a JSON array of
# "key=value" terms; '' when the call's data is not known) sets its custom terms. A file with a
# session_id joins its session's set (session:<cid>:<sid>: what the session's manifest lists), its
# session the call's set.
INTAKE = NOW + INDEX + """
local p, due = ARGV[1], now + tonumber(ARGV[2])
local file = cjson.decode(ARGV[3])
local transfers = cjson.decode(ARGV[4])
local fkey = p .. 'file:' .. file.id
if ARGV[7] == '1' and tonumber(file.fields.expires_at) <= now then return {0, 0, 1} end
if redis.call('EXISTS', p .. 'erased:' .. file.id) == 1 then return {0, 0, 0, 1} end
local is_new = redis.call('EXISTS', fkey) == 0
local stored_at = not is_new and tonumber(redis.call('HGET', fkey, 'url_at') or '') or nil
local url_at = tonumber(ARGV[6])
local take_url = is_new or stored_at == nil or url_at == nil or url_at > stored_at
if url_at == nil then url_at = math.max(now, (stored_at or 0) + 1) end
if ARGV[5] ~= '' then
  if is_new then
    redis.call('HSET', fkey, 'routing', 'pending')
    redis.call('ZADD', p .. 'unrouted', now + tonumber(ARGV[5]), file.id)
  end
elseif redis.call('HGET', fkey, 'routing') == 'pending' then
  redis.call('HSET', fkey, 'routing', 'resolved')
  redis.call('HDEL', fkey, 'routing_error')
  redis.call('ZREM', p .. 'unrouted', file.id)
end
local flat = {}
for k, v in pairs(file.fields) do
  if is_new or (k == 'url' and take_url) or (k == 'session_id' and redis.call('HEXISTS', fkey, k) == 0) then
    flat[#flat + 1] = k; flat[#flat + 1] = v
  end
end
if take_url then flat[#flat + 1] = 'url_at'; flat[#flat + 1] = url_at end
if #flat > 0 then redis.call('HSET', fkey, unpack(flat)) end
if is_new then redis.call('HSET', fkey, 'created_at', now) end
if ARGV[8] ~= '' then set_custom(p, fkey, file.id, ARGV[8]) end
index_file(p, fkey, file.id)
if file.fields.session_id then
  redis.call('SADD', p .. 'session:' .. file.fields.call_cid .. ':' .. file.fields.session_id, file.id)
  redis.call('SADD', p .. 'sessions:' .. file.fields.call_cid, file.fields.session_id)
end
local created = 0
for _, t in ipairs(transfers) do
  local tkey = p .. 'transfer:' .. t.id
  if redis.call('EXISTS', tkey) == 0 then
    if t.state == 'queued' and (t.fields.key or '') ~= '' then
      local owners = p .. 'keyowner:' .. t.fields.storage
      local owner = redis.call('HGET', owners, t.fields.key)
      if owner and owner ~= file.id then
        local alt = t.alt_key or ''
        local alt_owner = alt ~= '' and redis.call('HGET', owners, alt)
        if alt == '' or (alt_owner and alt_owner ~= file.id) then
          t.state, t.fields.reason = 'failed', 'key_taken'
          t.fields.error = 'key ' .. t.fields.key .. ' already holds file ' .. owner
        else
          t.fields.key = alt
        end
      end
      if t.state == 'queued' then redis.call('HSET', owners, t.fields.key, file.id) end
    end
    local tf = {'id', t.id, 'file_id', file.id, 'state', t.state, 'attempts', 0, 'epoch', 0,
                'created_at', now, 'updated_at', now, 'next_attempt_at', now}
    for k, v in pairs(t.fields) do tf[#tf + 1] = k; tf[#tf + 1] = v end
    redis.call('HSET', tkey, unpack(tf))
    redis.call('SADD', fkey .. ':transfers', t.id)
    redis.call('ZADD', p .. 'transfers', now, t.id)
    redis.call('ZADD', p .. 'state:' .. t.state, now, t.id)
    if t.state == 'queued' then
      redis.call('ZADD', p .. 'due', due, t.id)
      redis.call('ZADD', p .. 'expiry', t.expires, t.id)
    end
    created = created + 1
  end
end
return {is_new and 1 or 0, created, 0}
"""

# ARGV: prefix, file_id, url  ->  1 if stored (0: no such file)
# A URL Stream's API just signed (a refresh): newer than any event's, so stored with a url_at past
# the stored one's and no earlier than now (see INTAKE).
SET_URL = NOW + """
local fkey = ARGV[1] .. 'file:' .. ARGV[2]
if redis.call('EXISTS', fkey) == 0 then return 0 end
local stored_at = tonumber(redis.call('HGET', fkey, 'url_at') or '') or 0
redis.call('HSET', fkey, 'url', ARGV[3], 'url_at', math.max(now, stored_at + 1))
return 1
"""

# ARGV: prefix, tid, owner, token, lease_ms, limits_json, wait_ms  ->  {status, epoch}
# status: claimed | missing | not_due | busy (another worker holds its lease) | storage_busy (its
# storage already runs max_concurrency transfers: due again in wait_ms, no attempt counted) |
# <terminal state>. limits_json maps a storage name to its max_concurrency (absent: no limit).
# `token` (random, made by the caller) is what fences: HEARTBEAT and FINISH need it. The epoch only
# counts claims: after Redis lost its last writes (AOF everysec, a failover) it can be handed out twice.
CLAIM = NOW + """
local p, tid, owner, token, lease = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local tkey = p .. 'transfer:' .. tid
local t = redis.call('HMGET', tkey, 'state', 'next_attempt_at', 'lease_until', 'storage')
local state = t[1]
if not state then return {'missing', 0} end
if state == 'queued' then
  if t[2] and tonumber(t[2]) > now then return {'not_due', 0} end
elseif state == 'transferring' then
  if tonumber(t[3] or '0') > now then return {'busy', 0} end
else
  return {state, 0}
end
local running = p .. 'running:' .. (t[4] or '')
redis.call('ZREMRANGEBYSCORE', running, '-inf', now)
local limit = tonumber(cjson.decode(ARGV[6])[t[4] or ''] or 0)
if limit > 0 and redis.call('ZCARD', running) - (redis.call('ZSCORE', running, tid) and 1 or 0) >= limit then
  redis.call('ZADD', p .. 'due', now + tonumber(ARGV[7]), tid)
  return {'storage_busy', 0}
end
local epoch = redis.call('HINCRBY', tkey, 'epoch', 1)
redis.call('HINCRBY', tkey, 'attempts', 1)
redis.call('HSET', tkey, 'state', 'transferring', 'lease_owner', owner, 'lease_token', token,
           'lease_until', now + lease, 'updated_at', now)
redis.call('ZREM', p .. 'state:' .. state, tid)
redis.call('ZADD', p .. 'state:transferring', now, tid)
redis.call('ZADD', p .. 'due', now + lease, tid)
redis.call('ZADD', running, now + lease, tid)
return {'claimed', epoch}
"""

# ARGV: prefix, tid, token, lease_ms  ->  1 if the lease was extended, 0 if it is lost
HEARTBEAT = NOW + """
local p, tid, lease = ARGV[1], ARGV[2], tonumber(ARGV[4])
local tkey = p .. 'transfer:' .. tid
local t = redis.call('HMGET', tkey, 'state', 'lease_token', 'storage')
if t[1] ~= 'transferring' or t[2] ~= ARGV[3] then return 0 end
redis.call('HSET', tkey, 'lease_until', now + lease)
redis.call('ZADD', p .. 'due', now + lease, tid)
redis.call('ZADD', p .. 'running:' .. (t[3] or ''), now + lease, tid)
return 1
"""

# ARGV: prefix, tid, token, bytes, sha256  ->  1 if noted, 0 if the claim with `token` was taken over
# What an attempt is about to commit, noted just before (commit_bytes, commit_sha256): a later attempt
# whose create-only write finds exactly those bytes at its key knows an earlier commit of its own put
# them there, even when it fetched other bytes itself (a stats report differs between two fetches).
NOTE_COMMIT = """
local tkey = ARGV[1] .. 'transfer:' .. ARGV[2]
local t = redis.call('HMGET', tkey, 'state', 'lease_token')
if t[1] ~= 'transferring' or t[2] ~= ARGV[3] then return 0 end
redis.call('HSET', tkey, 'commit_bytes', ARGV[4], 'commit_sha256', ARGV[5])
return 1
"""

# ARGV: prefix, tid, token, state_json ('' = delete)  ->  1 if written, 0 if the claim with `token` was taken over
# What the store durably holds of the running attempt's upload (`upload:<tid>`: an UploadState's JSON), for
# a later attempt to resume; '' deletes it (a fresh upload started). Fenced like NOTE_COMMIT: a worker that
# lost its lease cannot point the next attempt at its upload. FINISH deletes it for every final state.
SAVE_UPLOAD = """
local tkey = ARGV[1] .. 'transfer:' .. ARGV[2]
local t = redis.call('HMGET', tkey, 'state', 'lease_token')
if t[1] ~= 'transferring' or t[2] ~= ARGV[3] then return 0 end
if ARGV[4] == '' then redis.call('DEL', ARGV[1] .. 'upload:' .. ARGV[2]) else
  redis.call('SET', ARGV[1] .. 'upload:' .. ARGV[2], ARGV[4]) end
return 1
"""

# ARGV: prefix, tid, token, new_key  ->  1 moved, 0 the key belongs to another file, -1 the claim with
# `token` was taken over
# A transfer that had to replace its damaged object where a retention period or a hold forbids it writes
# its copy to `new_key` (`worker.transfer.relocate`): the key is claimed for its file in the storage's
# key owners (so no other file is ever given it), the old one is kept in replaced_key (its object stays
# where the store keeps it), and replace is cleared: the write to the new key is create-only.
MOVE_KEY = """
local p, tid = ARGV[1], ARGV[2]
local tkey = p .. 'transfer:' .. tid
local t = redis.call('HMGET', tkey, 'state', 'lease_token', 'storage', 'file_id', 'key')
if t[1] ~= 'transferring' or t[2] ~= ARGV[3] then return -1 end
local owners = p .. 'keyowner:' .. (t[3] or '')
local owner = redis.call('HGET', owners, ARGV[4])
if owner and owner ~= t[4] then return 0 end
redis.call('HSET', owners, ARGV[4], t[4])
redis.call('HSET', tkey, 'key', ARGV[4], 'replaced_key', t[5] or '', 'replace', '')
return 1
"""

# ARGV: prefix, tid, token, new_state, retry_in_ms ('' = none), fields_json, outbox_json, actor
#   ->  1 or 0 (fenced out)
# A transfer back to `queued` is due, and its next_attempt_at set, retry_in_ms from now, and keeps its
# upload:<tid> (its next attempt resumes it); in any other state that record is deleted. `archived`,
# `failed` and `lost` are announced (file.<state>) in the same step; `archived` leaves an audit-log
# entry (action archive) too.
FINISH = NOW + ANNOUNCE + AUDIT_ENTRY + """
local p, tid, new = ARGV[1], ARGV[2], ARGV[4]
local tkey = p .. 'transfer:' .. tid
local t = redis.call('HMGET', tkey, 'state', 'lease_token', 'storage')
if t[1] ~= 'transferring' or t[2] ~= ARGV[3] then return 0 end
local flat = {'state', new, 'updated_at', now}
for k, v in pairs(cjson.decode(ARGV[6])) do flat[#flat + 1] = k; flat[#flat + 1] = v end
if new == 'queued' then
  flat[#flat + 1] = 'next_attempt_at'; flat[#flat + 1] = now + tonumber(ARGV[5] ~= '' and ARGV[5] or '0')
end
redis.call('HSET', tkey, unpack(flat))
redis.call('HDEL', tkey, 'lease_owner', 'lease_until', 'lease_token')
redis.call('ZREM', p .. 'state:transferring', tid)
redis.call('ZREM', p .. 'running:' .. (t[3] or ''), tid)
redis.call('ZADD', p .. 'state:' .. new, now, tid)
if new == 'queued' then
  redis.call('ZADD', p .. 'due', now + tonumber(ARGV[5] ~= '' and ARGV[5] or '0'), tid)
else
  redis.call('ZREM', p .. 'due', tid)
  redis.call('ZREM', p .. 'expiry', tid)
  redis.call('DEL', p .. 'upload:' .. tid)
  if new ~= 'skipped' then announce(p, ARGV[7], 'file.' .. new, tid, snapshot(tkey), now) end
  if new == 'archived' then audit_entry(p, audit_subject(tkey, 'archive', {actor = ARGV[8] or ''})) end
end
return 1
"""

# ARGV: prefix, count, computed_at_ms, outbox_json, transfer_ids_json  ->  1
# The at-risk count where monitoring reads it, and file.at_risk announced for each given transfer
# still queued or transferring (once per transfer: see ANNOUNCE).
PUBLISH_AT_RISK = NOW + ANNOUNCE + """
local p = ARGV[1]
redis.call('SET', p .. 'at_risk', ARGV[2])
redis.call('SET', p .. 'at_risk_at', ARGV[3])
for _, tid in ipairs(cjson.decode(ARGV[5])) do
  local tkey = p .. 'transfer:' .. tid
  local state = redis.call('HGET', tkey, 'state')
  if state == 'queued' or state == 'transferring' then
    announce(p, ARGV[4], 'file.at_risk', tid, snapshot(tkey), now)
  end
end
return 1
"""

# ARGV: prefix, redispatch_ms, limit, index ('due' | 'unrouted')
#   ->  ids now due, each pushed back by redispatch_ms (so a lost message is sent again later)
TAKE_DUE = NOW + """
local key, later = ARGV[1] .. ARGV[4], now + tonumber(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', key, later, id) end
return ids
"""

# ARGV: prefix, file_id, delay_ms, error  ->  1 if the file still waits for its routes (due again
# delay_ms from now; routing_attempts counts the failed lookups, routing_tried_at is the last one's
# time: both only shown)
DEFER_ROUTING = NOW + """
local fkey = ARGV[1] .. 'file:' .. ARGV[2]
if redis.call('HGET', fkey, 'routing') ~= 'pending' then return 0 end
redis.call('HSET', fkey, 'routing_error', ARGV[4], 'routing_tried_at', now)
redis.call('HINCRBY', fkey, 'routing_attempts', 1)
redis.call('ZADD', ARGV[1] .. 'unrouted', now + tonumber(ARGV[3]), ARGV[2])
return 1
"""

# ARGV: prefix, token, ttl_ms  ->  1 if this token holds the lock now
LOCK = """
local key = ARGV[1] .. 'scheduler:lock'
local holder = redis.call('GET', key)
if holder == false or holder == ARGV[2] then
  redis.call('SET', key, ARGV[2], 'PX', tonumber(ARGV[3]))
  return 1
end
return 0
"""

# ARGV: prefix, token  ->  1 if released
UNLOCK = """
local key = ARGV[1] .. 'scheduler:lock'
if redis.call('GET', key) == ARGV[2] then return redis.call('DEL', key) end
return 0
"""

# ARGV: prefix, tid, expires_ms ('' = unknown: now), actor  ->  1 if a failed (or lost) transfer was
# queued again (an audit-log entry, action retry, says what it was and why)
RETRY = NOW + AUDIT_ENTRY + """
local p, tid = ARGV[1], ARGV[2]
local tkey = p .. 'transfer:' .. tid
local state = redis.call('HGET', tkey, 'state')
if state ~= 'failed' and state ~= 'lost' then return 0 end
local was = redis.call('HMGET', tkey, 'reason', 'error')
audit_entry(p, audit_subject(tkey, 'retry', {previous_state = state, reason = was[1] or '', error = was[2] or '',
                                             actor = ARGV[4] or ''}))
redis.call('HSET', tkey, 'state', 'queued', 'updated_at', now, 'next_attempt_at', now,
           'error', 'retried by an operator; before: ' .. (redis.call('HGET', tkey, 'error') or ''))
redis.call('ZREM', p .. 'state:' .. state, tid)
redis.call('ZADD', p .. 'state:queued', now, tid)
redis.call('ZADD', p .. 'due', now, tid)
redis.call('ZADD', p .. 'expiry', ARGV[3] ~= '' and tonumber(ARGV[3]) or now, tid)
return 1
"""

# KEYS: marker, list ; ARGV: record_json, keep, ttl_ms, prefix, outbox_json
#   ->  1 if noted now (and announced: stream.failure), 0 if already noted
NOTE_FAILURE = NOW + ANNOUNCE + """
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', tonumber(ARGV[3])) then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
announce(ARGV[4], ARGV[5], 'stream.failure', string.sub(KEYS[1], #ARGV[4] + 1), ARGV[1], now)
return 1
"""

# ARGV: prefix, tid, finished_before_ms, now, dry_run ('1' | '0'), actor
#   ->  {status, file_id, file_deleted}; status: pruned | would_prune | missing | not_archived | held | recent |
#   at_stream (held: a legal hold on its call, `hold:<cid>`, keeps it)
# Forget one `archived` transfer (`archiver transfers prune`): its hash and every index entry
# (transfers, state:*, due, expiry, its file's transfer set), and the file's record with the last
# of its transfers (and its entries in the index: INDEX's unindex_file). Only when it was archived before the cutoff
# and Stream's deletion deadline has passed: a file Stream still lists would otherwise be recorded,
# and uploaded, again. What is pruned leaves an audit-log entry (action prune; file_forgotten: the
# file's record went with it).
PRUNE = INDEX + AUDIT_ENTRY + """
local p, tid, cutoff, now = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local tkey = p .. 'transfer:' .. tid
local t = redis.call('HMGET', tkey, 'state', 'updated_at', 'expires_at', 'file_id', 'call_cid')
if not t[1] then return {'missing', '', 0} end
local fid = t[4] or ''
if t[1] ~= 'archived' then return {'not_archived', fid, 0} end
if t[5] and redis.call('EXISTS', p .. 'hold:' .. t[5]) == 1 then return {'held', fid, 0} end
local finished = tonumber(t[2] or '')
if finished == nil or finished > cutoff then return {'recent', fid, 0} end
local expires = tonumber(t[3] or '')
if expires == nil or expires > now then return {'at_stream', fid, 0} end
if ARGV[5] == '1' then return {'would_prune', fid, 0} end
local entry = audit_subject(tkey, 'prune', {actor = ARGV[6] or ''})
entry.file_forgotten = false
redis.call('DEL', tkey)
redis.call('ZREM', p .. 'transfers', tid)
redis.call('ZREM', p .. 'due', tid)
redis.call('ZREM', p .. 'expiry', tid)
for _, state in ipairs({'queued', 'transferring', 'archived', 'failed', 'skipped', 'lost'}) do
  redis.call('ZREM', p .. 'state:' .. state, tid)
end
local fkey = p .. 'file:' .. fid
redis.call('SREM', fkey .. ':transfers', tid)
if redis.call('SCARD', fkey .. ':transfers') == 0 and redis.call('HGET', fkey, 'routing') ~= 'pending' then
  unindex_file(p, fkey, fid)
  redis.call('DEL', fkey)
  redis.call('ZREM', p .. 'unrouted', fid)
  entry.file_forgotten = true
  audit_entry(p, entry)
  return {'pruned', fid, 1}
end
audit_entry(p, entry)
return {'pruned', fid, 0}
"""

# ARGV: prefix, tid, error, actor  ->  1 if an `archived` transfer was queued again (its object changed)
# Deletion and prune found the object at its key no longer the bytes archived: archive it again, with
# replace=1 (its write may replace that object, the one exception to create-only writes for a file).
# Time from Redis itself, as every script's should be. An audit-log entry (action retry, reason
# object_changed) records it.
REQUEUE_ARCHIVED = NOW + AUDIT_ENTRY + """
local p, tid = ARGV[1], ARGV[2]
local tkey = p .. 'transfer:' .. tid
if redis.call('HGET', tkey, 'state') ~= 'archived' then return 0 end
audit_entry(p, audit_subject(tkey, 'retry', {previous_state = 'archived', reason = 'object_changed',
                                             error = ARGV[3], actor = ARGV[4] or ''}))
redis.call('HSET', tkey, 'state', 'queued', 'updated_at', now, 'next_attempt_at', now,
           'error', ARGV[3], 'reason', 'object_changed', 'replace', '1')
redis.call('ZREM', p .. 'state:archived', tid)
redis.call('ZADD', p .. 'state:queued', now, tid)
redis.call('ZADD', p .. 'due', now, tid)
local expires = tonumber(redis.call('HGET', tkey, 'expires_at') or '')
if expires then redis.call('ZADD', p .. 'expiry', expires, tid) end
return 1
"""

# ARGV: prefix, file_id, outcome, actor  ->  1 (0: the file's record is gone; the entry is still written)
# The file no longer needs deleting from Stream (deleted_from_stream_at, and how that ended), and its
# audit-log entry (action delete_from_stream), in one step. A record pruned meanwhile is not made again.
DELETED_FROM_STREAM = NOW + AUDIT_ENTRY + """
local p, fid = ARGV[1], ARGV[2]
local fkey = p .. 'file:' .. fid
local f = redis.call('HMGET', fkey, 'call_cid', 'session_id', 'kind', 'filename')
audit_entry(p, {action = 'delete_from_stream', file_id = fid, call_cid = f[1] or nil, session_id = f[2] or nil,
                kind = f[3] or nil, filename = f[4] or nil, outcome = ARGV[3],
                actor = ARGV[4] ~= '' and ARGV[4] or nil})
if redis.call('EXISTS', fkey) == 0 then return 0 end
redis.call('HSET', fkey, 'deleted_from_stream_at', now, 'deleted_from_stream', ARGV[3])
return 1
"""
