"""What the ledger holds, as Python values: transfer states, a transfer, a claim, an intake."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from worker.clock import from_ms, rfc3339

State = Literal["queued", "transferring", "archived", "failed", "skipped", "lost"]
STATES: tuple[State, ...] = ("queued", "transferring", "archived", "failed", "skipped", "lost")
# Not a transfer state: a file recorded without transfers, waiting for its routes (call-level
# routing asks Stream for the call first). `archiver transfers list` shows it as a row in this state.
ROUTING = "routing"
LISTED_STATES: tuple[str, ...] = (ROUTING, *STATES)
TERMINAL: frozenset[str] = frozenset({"archived", "failed", "skipped", "lost"})



@dataclass(frozen=True)
class NewTransfer:
    """A transfer to record with its file: its id, storage, key, and first state."""

    id: str
    storage: str
    key: str
    state: State = "queued"
    error: str | None = None


@dataclass(frozen=True)
class Transfer:
    """One file to one storage, as the ledger holds it."""

    id: str
    file_id: str
    call_cid: str
    kind: str
    filename: str
    session_id: str | None
    storage: str
    key: str
    state: str
    attempts: int
    epoch: int
    bytes: int | None
    sha256: str | None
    error: str | None
    reason: str | None
    created_at: datetime | None
    updated_at: datetime | None
    next_attempt_at: datetime | None
    expires_at: datetime | None
    lease_owner: str | None = None
    lease_until: datetime | None = None
    raw: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    # What the store durably holds of the upload its last attempt left unfinished (``upload:<tid>``: the
    # JSON of `worker.storage.base.UploadState`), read by `Ledger.get` only. A capability, maybe: not shown.
    upload: str | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_hash(cls, h: dict[str, str], upload: str | None = None) -> Transfer:
        def opt(name: str) -> str | None:
            return h.get(name) or None

        size = opt("bytes")
        return cls(
            id=h["id"], file_id=h["file_id"], call_cid=h.get("call_cid", ""), kind=h.get("kind", ""),
            filename=h.get("filename", ""), session_id=opt("session_id"), storage=h.get("storage", ""),
            key=h.get("key", ""), state=h["state"], attempts=int(h.get("attempts", 0)),
            epoch=int(h.get("epoch", 0)), bytes=int(size) if size else None, sha256=opt("sha256"),
            error=opt("error"), reason=opt("reason"), created_at=from_ms(opt("created_at")),
            updated_at=from_ms(opt("updated_at")),
            next_attempt_at=from_ms(opt("next_attempt_at")), expires_at=from_ms(opt("expires_at")),
            lease_owner=opt("lease_owner"), lease_until=from_ms(opt("lease_until")), raw=h, upload=upload or None,
        )

    @property
    def replaces(self) -> bool:
        """Its write may replace the object at its key: a verification found that object missing or
        damaged and queued it again (``replace``, set by `Ledger.requeue_archived`; a ledger from before
        that field says so by the reason ``object_changed``; `Ledger.move_key` clears it). Every other
        write is create-only."""
        replace = self.raw.get("replace")
        return replace == "1" or (replace is None and self.reason == "object_changed")

    @property
    def replaced_key(self) -> str | None:
        """The key it had before its copy went to a new one, where a retention period or a hold kept the
        damaged object there (`worker.transfer.relocate`); None when it never moved."""
        return self.raw.get("replaced_key") or None

    @property
    def noted_commit(self) -> tuple[int, str] | None:
        """Size and SHA-256 an earlier attempt was about to commit (`Ledger.note_commit`), if any."""
        size, sha256 = self.raw.get("commit_bytes"), self.raw.get("commit_sha256")
        return (int(size), sha256) if size and sha256 else None

    def to_json(self) -> dict[str, Any]:
        """The public JSON shape (`archiver transfers list --json`): times in RFC 3339 UTC."""
        return {
            "id": self.id, "call_cid": self.call_cid, "session_id": self.session_id, "kind": self.kind,
            "filename": self.filename, "storage": self.storage, "key": self.key, "replaced_key": self.replaced_key,
            "state": self.state,
            "bytes": self.bytes, "sha256": self.sha256, "attempts": self.attempts, "error": self.error,
            "reason": self.reason,
            "expires_at": rfc3339(self.expires_at), "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at), "next_attempt_at": rfc3339(self.next_attempt_at),
            "file_id": self.file_id,
        }


@dataclass(frozen=True)
class Claim:
    """The outcome of asking to run a transfer. When claimed, `token` is its fencing token (random,
    this claim's only: HEARTBEAT and FINISH need it) and `epoch` counts the claims so far."""

    status: str
    epoch: int = 0
    token: str = ""

    @property
    def claimed(self) -> bool:
        return self.status == "claimed"


@dataclass(frozen=True)
class Intake:
    file_is_new: bool
    transfers_created: int
    expired: bool = False  # refused, nothing written: the file's deadline had passed
    erased: bool = False  # refused, nothing written: `archiver erase` erased it (`erased:<fid>`)


# Hands ledger ids to the workers: transfers (``t_…``) to archive, files (``f_…``) to route. Best
# effort: what it loses, the scheduler's sweep of the ledger finds again.
Enqueue = Callable[[Sequence[str]], None]
