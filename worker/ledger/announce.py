"""The Lua that writes the notifications' outbox, in the same step as the change it announces.

`ANNOUNCE` is prepended to the scripts that make an announced change (`worker.ledger.scripts`:
FINISH, NOTE_FAILURE, PUBLISH_AT_RISK); the outbox's layout is in `worker.ledger.keys`, its
deliveries' own scripts in `worker.notify.outbox`.
"""

# The outbox of the notifications (`worker.notify`), written by the script whose change it announces,
# so a crash between the change and its announcement cannot happen. `announce` takes the outbox's
# routes (outbox_json, made by `worker.notify.outbox.routes_json`: '' when no endpoint is configured,
# then nothing is written): {"retry_ms": N, "endpoints": [{"id": …, "events": [type, …]}]}. The event id
# is deterministic per (type, subject): a second announcement of the same change writes nothing. One
# delivery per endpoint that wants the type, pending and due now. `snapshot` is a hash as JSON, lease
# fields left out (a transfer's data is its hash when the change was made).
ANNOUNCE = """
local function announce(p, outbox_json, etype, subject, data, now)
  if outbox_json == nil or outbox_json == '' then return 0 end
  local outbox = cjson.decode(outbox_json)
  local eid = 'ev_' .. string.sub(redis.sha1hex(etype .. ':' .. subject), 1, 24)
  local ekey = p .. 'notify:event:' .. eid
  if redis.call('EXISTS', ekey) == 1 then return 0 end
  local made = {}
  for _, e in ipairs(outbox.endpoints) do
    for _, wanted in ipairs(e.events) do
      if wanted == etype then
        local did = eid .. ':' .. e.id
        redis.call('HSET', p .. 'notify:delivery:' .. did, 'id', did, 'event_id', eid, 'endpoint', e.id,
                   'state', 'pending', 'attempts', 0, 'created_at', now, 'updated_at', now, 'next_at', now,
                   'give_up_at', now + tonumber(outbox.retry_ms))
        redis.call('ZADD', p .. 'notify:due', now, did)
        redis.call('ZADD', p .. 'notify:state:pending', now, did)
        made[#made + 1] = did
      end
    end
  end
  if #made > 0 then
    redis.call('HSET', ekey, 'id', eid, 'type', etype, 'subject', subject, 'created_at', now, 'data', data,
               'deliveries', table.concat(made, ','))
  end
  return #made
end
local function snapshot(key)
  local flat, map = redis.call('HGETALL', key), {}
  for i = 1, #flat, 2 do
    if string.sub(flat[i], 1, 6) ~= 'lease_' then map[flat[i]] = flat[i + 1] end
  end
  return cjson.encode(map)
end
"""
