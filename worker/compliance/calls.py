"""Which call a hold or an erasure is about, and which of its objects the archiver wrote.

`archiver hold` and `archiver erase` act on one call: ``type:id``. An id alone (as `transfers list --call`
takes) is accepted only when the ledger knows exactly one call of that id, since a hold or an erasure of
the wrong call cannot be taken back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from worker.ledger.calls import read_call, split_query
from worker.ledger.models import Transfer
from worker.ledger.store import Ledger
from worker.storage import Storage

StorageOf = Callable[[str], Storage]  # a storage by name (KeyError / StorageRefused when it cannot be had)


class UnknownCall(ValueError):
    """The call given is not ``type:id``, and its id alone names no call, or more than one, in the ledger."""


def resolve_call(ledger: Ledger, query: str) -> str:
    """The call cid `query` names (see the module docstring). Raises UnknownCall."""
    call_id, call_cid = split_query(query)
    if call_cid is not None:
        if not call_id or call_cid.startswith(":"):
            raise UnknownCall(f"{query!r} is not a call cid (type:id)")
        return call_cid
    found = read_call(ledger, call_id, limit=None).call_cids
    if len(found) == 1:
        return found[0]
    if not found:
        raise UnknownCall(f"the ledger has no call with id {call_id!r}: give its cid (type:id)")
    raise UnknownCall(f"several calls have the id {call_id!r} ({', '.join(found)}): give the cid (type:id)")


@dataclass(frozen=True)
class CallFileRecord:
    """A file of the call, as the ledger holds it, with its transfers."""

    file_id: str
    fields: dict[str, str]
    transfers: tuple[Transfer, ...]

    @property
    def session_id(self) -> str:
        return self.fields.get("session_id", "")


def call_files(ledger: Ledger, call_cid: str, session: str | None = None) -> list[CallFileRecord]:
    """Every file of the call the ledger holds (only those of `session` when given), with its transfers."""
    call = read_call(ledger, call_cid, limit=None)
    return [CallFileRecord(f.id, f.fields, f.transfers) for f in call.files
            if session is None or f.fields.get("session_id", "") == session]


def ours(transfer: Transfer) -> bool:
    """Whether an object at the transfer's key would be one the archiver wrote: it has a key (not
    skipped), and no create-only write found another's object there (reason ``key_taken``). One key
    holds one file (``keyowner:<storage>``), so whatever else is at such a key is this file's."""
    return bool(transfer.key) and transfer.state != "skipped" and transfer.reason != "key_taken"
