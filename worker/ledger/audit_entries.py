"""The audit log's entries as the ledger writes them: queued (``auditlog:pending``) in the same step as
the change they record, for `worker.auditlog.chain` to seal into the chain.

`AUDIT_ENTRY` is prepended to the scripts that make an audited change (`worker.ledger.scripts`:
FINISH when a transfer becomes archived, RETRY, REQUEUE_ARCHIVED, PRUNE, DELETED_FROM_STREAM), so a
crash between the change and its entry cannot happen; Python code that makes an audited change of
its own calls `worker.auditlog.note`, which queues `pending_entry`. What each action's entry holds
is listed in docs/audit-log.md.
"""

from __future__ import annotations

import json

# Names the chain gives every entry: a pending entry never carries them (`pending_entry` refuses them).
SEALED_FIELDS = frozenset({"seq", "prev", "hash"})

Value = str | int | bool | None

# `audit_entry(p, entry)`: stamp `entry` (a table of fields) with Redis's time (at, ms) and queue it.
# `audit_subject(tkey, action, extra)`: the entry of `action` on the transfer at `tkey`, its subject
# read from the hash as it is now (the caller reads it before or after its change: it knows which),
# with the `extra` fields that are not ''. A field the hash lacks is left out. Integers stay integers
# (cjson writes them without a fraction up to 14 digits: every time in ms, any size below 100 TB).
AUDIT_ENTRY = """
local function audit_entry(p, entry)
  local clock = redis.call('TIME')
  entry.at = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  redis.call('RPUSH', p .. 'auditlog:pending', cjson.encode(entry))
end
local function audit_subject(tkey, action, extra)
  local t = redis.call('HMGET', tkey, 'id', 'file_id', 'call_cid', 'session_id', 'kind', 'storage', 'key',
                       'bytes', 'sha256')
  local entry = {action = action, transfer_id = t[1] or nil, file_id = t[2] or nil, call_cid = t[3] or nil,
                 session_id = t[4] or nil, kind = t[5] or nil, storage = t[6] or nil, key = t[7] or nil,
                 bytes = tonumber(t[8] or ''), sha256 = t[9] or nil}
  for k, v in pairs(extra) do if v ~= '' then entry[k] = v end end
  return entry
end
"""


def pending_entry(action: str, at: int, fields: dict[str, Value]) -> str:
    """An entry as queued: `action`, `at` (ms) and the `fields` that are not None, as JSON. Raises
    ValueError for a field the chain gives itself (seq, prev, hash) or that `action`/`at` name, and
    TypeError for a value that is not a string, an integer, a boolean or None."""
    taken = SEALED_FIELDS.intersection(fields) | {"action", "at"}.intersection(fields)
    if taken:
        raise ValueError(f"an audit-log entry cannot be given {', '.join(sorted(taken))}: the log sets them")
    for name, value in fields.items():
        if value is not None and not isinstance(value, str | int | bool):
            raise TypeError(f"audit-log field {name}={value!r}: only strings, integers and booleans are kept")
    entry = {"action": action, "at": at, **{k: v for k, v in fields.items() if v is not None}}
    return json.dumps(entry, sort_keys=True, separators=(",", ":"))
