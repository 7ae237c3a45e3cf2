"""The transfer ledger in Redis: the source of truth (the Celery queue is only a hint).

States::

    (routing) ──▶ queued     (a file waiting for its routes has no transfers yet: `worker.ledger.unrouted`)
    queued ──claim──▶ transferring ──▶ archived
      ▲                    │  ├──────▶ failed    (permanent error; kept until retried by command)
      └──── backoff ───────┘  └──────▶ lost      (the source no longer has it; never archived)
    skipped                 (the route says not to archive)

The keys are those of `worker.ledger.keys` (`Ledger.keys`). Every change is one Lua script
(`worker.ledger.scripts`), so a crash never leaves half a change.
A running transfer holds a lease (renewed by heartbeat) and a random fencing token made for its
claim: a worker whose lease was taken over can no longer write its result, even when Redis lost its
last writes and handed out the same epoch twice. Leases and due times are judged by Redis's clock
(TIME, inside the scripts), never by a worker's or the scheduler's.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, cast

import redis

from worker.clock import to_ms
from worker.files import StreamFile
from worker.intake.object_keys import key_of_another_owner
from worker.ledger import scripts as lua
from worker.ledger.index import terms_json
from worker.ledger.keys import DEFAULT_PREFIX, Keys
from worker.ledger.models import (
    Claim,
    Intake,
    NewTransfer,
    State,
    Transfer,
)


def _strings(values: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in values.items() if v is not None}


class Ledger:
    """Typed access to the ledger's keys and scripts."""

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX, *, outbox: str = "",
                 actor: str = "archiver") -> None:
        self.redis = client
        self.prefix = prefix
        # The notifications' routes (`worker.notify.outbox.routes_json`; '' = none): the scripts that
        # change a state announce it in the same step (`worker.ledger.announce`).
        self.outbox = outbox
        # Who makes the changes through this ledger (worker, scheduler, cli): the audit log's `actor`.
        self.actor = actor
        self.keys = Keys(prefix)
        self._intake = client.register_script(lua.INTAKE)
        self._claim = client.register_script(lua.CLAIM)
        self._heartbeat = client.register_script(lua.HEARTBEAT)
        self._finish = client.register_script(lua.FINISH)
        self._note_commit = client.register_script(lua.NOTE_COMMIT)
        self._save_upload = client.register_script(lua.SAVE_UPLOAD)
        self._move_key = client.register_script(lua.MOVE_KEY)
        self._take_due = client.register_script(lua.TAKE_DUE)
        self._defer_routing = client.register_script(lua.DEFER_ROUTING)
        self._retry = client.register_script(lua.RETRY)
        self._set_url = client.register_script(lua.SET_URL)
        self._requeue_archived = client.register_script(lua.REQUEUE_ARCHIVED)
        self._deleted_from_stream = client.register_script(lua.DELETED_FROM_STREAM)
        self._note_failure = client.register_script(lua.NOTE_FAILURE)
        self._publish_at_risk = client.register_script(lua.PUBLISH_AT_RISK)
        self._lock = client.register_script(lua.LOCK)
        self._unlock = client.register_script(lua.UNLOCK)

    # -- writing -------------------------------------------------------------------------------

    def record(self, file: StreamFile, transfers: Iterable[NewTransfer], *, expires_at: datetime,
               dispatch_in_ms: int = 0, route_in_ms: int | None = None, refuse_expired: bool = False,
               custom: Sequence[str] | None = None) -> Intake:
        """Record `file` and its transfers in one step; existing ones are left as they are. New queued
        transfers are due `dispatch_in_ms` from now; every time written is Redis's (TIME), never
        this process's clock.

        Each key has one owner file per storage: a queued transfer whose key another file owns
        already gets `worker.intake.object_keys.key_of_another_owner` instead (``failed`` if that is taken too).

        With `route_in_ms`, the file's destinations are not known yet (no transfers are given): it
        waits in the ``unrouted`` index, to be resolved that much later; without it, `transfers`
        are its routes.

        The file keeps the URL of the newest event (`StreamFile.url_at`): an older one never
        replaces it. With `refuse_expired`, a file whose `expires_at` has passed (by Redis's clock)
        is not recorded at all (`Intake.expired`); nor is a file `archiver erase` erased (`Intake.erased`).

        The file is indexed for `archiver find` in the same step (`worker.ledger.index`): by call,
        call type and day, and, when `custom` is given (its call's custom terms, from
        `worker.ledger.index.custom_terms`; none: the call's data is not known here), by those terms.
        """
        expires = to_ms(expires_at)
        file_fields = _strings({
            "call_cid": file.call_cid, "kind": file.kind, "filename": file.filename, "url": file.url,
            "session_id": file.session_id, "recording_type": file.recording_type,
            "egress_id": file.egress_id, "start_time": to_ms(file.start_time),
            "end_time": to_ms(file.end_time), "expires_at": expires,
        })
        rows = [{
            "id": t.id, "state": t.state, "expires": str(expires),
            "alt_key": key_of_another_owner(t.key, file.file_id) if t.key else "",
            "fields": _strings({
                "call_cid": file.call_cid, "kind": file.kind, "filename": file.filename,
                "session_id": file.session_id, "storage": t.storage, "key": t.key,
                "expires_at": expires, "error": t.error,
            }),
        } for t in transfers]
        result = self._intake(args=[self.prefix, dispatch_in_ms,
                                    json.dumps({"id": file.file_id, "fields": file_fields}),
                                    json.dumps(rows), "" if route_in_ms is None else route_in_ms,
                                    "" if file.url_at is None else round(file.url_at.timestamp() * 1000),
                                    "1" if refuse_expired else "0",
                                    "" if custom is None else terms_json(custom)])
        is_new, created, expired, *erased = cast(list[int], result)
        return Intake(bool(is_new), int(created), bool(expired), bool(erased and erased[0]))

    def now_ms(self) -> int:
        """Redis's clock (TIME), in ms: what leases, waits and due times are judged by."""
        seconds, micros = self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def claim(self, transfer_id: str, owner: str, lease_ms: int, *, limits: Mapping[str, int] | None = None,
              busy_wait_ms: int = 3000) -> Claim:
        """Take the transfer's lease for `lease_ms` (by Redis's clock), with a fresh random token.
        `limits` maps a storage to its max_concurrency: when that many of its transfers hold a live
        lease, the claim is refused (``storage_busy``) and the transfer is due again in
        `busy_wait_ms`, with no attempt counted."""
        token = secrets.token_hex(16)
        status, epoch = cast(list[Any], self._claim(
            args=[self.prefix, transfer_id, owner, token, lease_ms, json.dumps(dict(limits or {})), busy_wait_ms]))
        return Claim(str(status), int(epoch), token if str(status) == "claimed" else "")

    def heartbeat(self, transfer_id: str, token: str, lease_ms: int) -> bool:
        """Extend the lease to `lease_ms` from now; False once the claim with `token` is not the
        transfer's any more."""
        return bool(self._heartbeat(args=[self.prefix, transfer_id, token, lease_ms]))

    def finish(self, transfer_id: str, token: str, state: State, *, retry_in_ms: int | None = None,
               **fields: Any) -> bool:
        """Move a claimed transfer to `state` (``queued``: due again, and its next_attempt_at,
        `retry_in_ms` from now); False when the claim with `token` was taken over. ``archived`` leaves
        an audit-log entry in the same step."""
        args: list[str | int] = [self.prefix, transfer_id, token, state,
                                 "" if retry_in_ms is None else retry_in_ms, json.dumps(_strings(fields)),
                                 self.outbox, self.actor]
        return bool(self._finish(args=args))

    def note_commit(self, transfer_id: str, token: str, size: int, sha256: str) -> bool:
        """Note the bytes a claimed transfer is about to commit (``commit_bytes``, ``commit_sha256``);
        False when the claim with `token` was taken over."""
        return bool(self._note_commit(args=[self.prefix, transfer_id, token, size, sha256]))

    def save_upload(self, transfer_id: str, token: str, state_json: str) -> bool:
        """Keep what the store durably holds of a claimed transfer's upload (``upload:<tid>``, an
        UploadState's JSON; '' deletes it), for a later attempt to resume; False when the claim with
        `token` was taken over (nothing written)."""
        return bool(self._save_upload(args=[self.prefix, transfer_id, token, state_json]))

    def move_key(self, transfer_id: str, token: str, new_key: str) -> bool | None:
        """Give a claimed transfer the object key `new_key` (its old one kept as ``replaced_key``; see
        `worker.transfer.relocate`): True once moved, False when `new_key` belongs to another file, None
        when the claim with `token` was taken over."""
        moved = int(cast(int, self._move_key(args=[self.prefix, transfer_id, token, new_key])))
        return None if moved < 0 else moved == 1

    def take_due(self, redispatch_ms: int, limit: int = 500,
                 index: Literal["due", "unrouted", "notify:due"] = "due") -> list[str]:
        """Transfers (or, with index="unrouted", files waiting for their routes; "notify:due", the
        deliveries of notifications) due now, each
        pushed back by `redispatch_ms` (so a lost message is sent again later)."""
        ids = self._take_due(args=[self.prefix, redispatch_ms, limit, index])
        return [str(i) for i in cast(list[Any], ids)]

    def soonest_to_expire(self, transfer_ids: list[str]) -> list[str]:
        """`transfer_ids` ordered by when Stream deletes their files, soonest first (unknown last)."""
        if not transfer_ids:
            return []
        scores: list[float | None] = self.redis.zmscore(self.keys.expiry, transfer_ids)
        last = float("inf")
        return [tid for _, tid in sorted(zip((last if s is None else s for s in scores), transfer_ids,
                                             strict=True))]

    def defer_routing(self, file_id: str, delay_ms: int, error: str) -> bool:
        """Try routing `file_id` again `delay_ms` from now (its failed lookups counted, the last
        one's time and `error` kept); False when it no longer waits for routes."""
        return bool(self._defer_routing(args=[self.prefix, file_id, delay_ms, error]))

    def retry(self, transfer_id: str) -> bool:
        """Queue a `failed` (or `lost`) transfer again, now, with its audit-log entry; False for any
        other state."""
        transfer = self.get(transfer_id)
        if transfer is None:
            return False
        expires = to_ms(transfer.expires_at) if transfer.expires_at else ""
        return bool(self._retry(args=[self.prefix, transfer_id, expires, self.actor]))

    def requeue_archived(self, transfer_id: str, error: str) -> bool:
        """Queue an `archived` transfer again, due now (reason ``object_changed``, and ``replace``: its
        write may replace the object, `Transfer.replaces`): its object is no longer the bytes archived.
        Its audit-log entry (a retry, reason ``object_changed``) is written in the same step. False
        when it is not `archived` (any more)."""
        return bool(self._requeue_archived(args=[self.prefix, transfer_id, error, self.actor]))

    def set_file_url(self, file_id: str, url: str) -> bool:
        """A fresher signed URL for the file, just listed by Stream's API: newer than any event's, so
        it replaces the stored one (and no replayed event replaces it). False when the file is gone."""
        return bool(self._set_url(args=[self.prefix, file_id, url]))

    def mark_deleted_from_stream(self, file_id: str, outcome: str) -> None:
        """Record that the file no longer needs deleting from Stream (and how that ended), with its
        audit-log entry, in one step."""
        self._deleted_from_stream(args=[self.prefix, file_id, outcome, self.actor])

    def note_failure(self, record: dict[str, Any], keep: int = 10_000, remember_ms: int = 15 * 86_400_000) -> bool:
        """Keep a failure event Stream reported (newest first, the last `keep` of them), once per
        (kind, call, egress): a redelivery returns False and keeps nothing."""
        keys = [self.failure_marker(record), self.keys.stream_failures]
        return bool(self._note_failure(keys=keys, args=[json.dumps(record), keep, remember_ms, self.prefix,
                                                        self.outbox]))

    def publish_at_risk(self, count: int, computed_at_ms: int, transfer_ids: Iterable[str] = ()) -> None:
        """Keep the at-risk count where monitoring reads it (``at_risk``: files, ``at_risk_at``: ms),
        and announce ``file.at_risk`` for each of `transfer_ids` still queued or running, in one step."""
        self._publish_at_risk(args=[self.prefix, count, computed_at_ms, self.outbox, json.dumps(list(transfer_ids))])

    def failure_marker(self, record: Mapping[str, Any]) -> str:
        """The key that remembers a failure was noted (its subject, less the prefix, when announced)."""
        identity = record.get("egress_id") or record.get("created_at")
        return self.keys.failure(record["kind"], record["call_cid"], identity)

    def stream_failures(self, limit: int = 100) -> list[dict[str, Any]]:
        """The failure events Stream reported, newest first."""
        return [json.loads(raw) for raw in cast(list[str], self.redis.lrange(self.keys.stream_failures, 0, limit - 1))]

    def cached_call(self, call_cid: str) -> dict[str, Any] | None | Literal[False]:
        """A call's cached GetCall data; None if Stream had no such call; False if not cached."""
        raw = self.redis.get(self.keys.call(call_cid))
        if raw is None:
            return False
        value = json.loads(cast(str, raw))
        return value if isinstance(value, dict) else None

    def cache_call(self, call_cid: str, call: dict[str, Any] | None, ttl_ms: int) -> None:
        self.redis.set(self.keys.call(call_cid), json.dumps(call), px=max(1, ttl_ms))

    def acquire_lock(self, token: str, ttl_ms: int) -> bool:
        return bool(self._lock(args=[self.prefix, token, ttl_ms]))

    def release_lock(self, token: str) -> None:
        self._unlock(args=[self.prefix, token])

    # -- reading -------------------------------------------------------------------------------

    def get(self, transfer_id: str) -> Transfer | None:
        """The transfer, with the upload its last attempt left to resume (`Transfer.upload`)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(self.keys.transfer(transfer_id))
        pipe.get(self.keys.upload(transfer_id))
        h, upload = cast(tuple[dict[str, str], str | None], tuple(pipe.execute()))
        return Transfer.from_hash(h, upload=upload) if h else None

    def file(self, file_id: str) -> dict[str, str]:
        return cast(dict[str, str], self.redis.hgetall(self.keys.file(file_id)))

    def transfers_of(self, file_id: str) -> list[str]:
        return sorted(cast(set[str], self.redis.smembers(self.keys.file_transfers(file_id))))

    def ids(self, state: str | None = None) -> list[str]:
        key = self.keys.state(state) if state else self.keys.transfers
        return [str(i) for i in cast(list[Any], self.redis.zrange(key, 0, -1))]

    def iter_transfers(self, state: str | None = None, batch: int = 500) -> Iterator[Transfer]:
        ids = self.ids(state)
        for start in range(0, len(ids), batch):
            pipe = self.redis.pipeline(transaction=False)
            for tid in ids[start:start + batch]:
                pipe.hgetall(self.keys.transfer(tid))
            for h in pipe.execute():
                if h:
                    yield Transfer.from_hash(h)
