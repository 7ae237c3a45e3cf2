"""A damaged object that retention keeps: the transfer's copy goes to a new key, recorded in the ledger.

A transfer queued again because a verification found its object missing or damaged (`Transfer.replaces`)
writes over that object: the one exception to create-only writes for a file. Where a retention
period or a hold protects the object, the store refuses (ObjectLocked: GCS object retention and holds,
an Azure container's immutability policy; S3 Object Lock and Azure's version-level immutability do not
refuse an overwrite, they keep the old version behind the new one). The copy then goes to the first
free key of `alternative_keys`: the number goes before the extension, ``rec.mp4`` → ``rec.1.mp4``,
``rec.2.mp4``… (a name without an extension ends in it: ``notes`` → ``notes.1``), so that tools still
know the file by its extension. A key is free when no object is there and no other file owns it in
the ledger (`Ledger.move_key` claims it for this file, atomically). The ledger's transfer then has that
key in ``key`` and the old one in ``replaced_key``; the damaged object stays where the store keeps it.
The write to the new key is create-only, as every write of a file: an object already there holding
the file's bytes is archived as it is (an earlier attempt's), never anything over other bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import structlog

from worker.errors import KeyTaken, LeaseLost, ObjectLocked
from worker.ledger.models import Transfer
from worker.runtime import Runtime

log = structlog.get_logger(__name__)
MAX_ALTERNATIVES = 20


def alternative_keys(key: str, count: int = MAX_ALTERNATIVES) -> Iterator[str]:
    """``dir/rec.1.mp4``, ``dir/rec.2.mp4``… for ``dir/rec.mp4`` (see the module docstring)."""
    folder, slash, name = key.rpartition("/")
    stem, dot, extension = name.rpartition(".")
    if not stem:  # no extension, or a name that only starts with a dot (".hidden")
        stem, dot, extension = name, "", ""
    for number in range(1, count + 1):
        yield f"{folder}{slash}{stem}.{number}{dot}{extension}"


def relocate(runtime: Runtime, transfer: Transfer, token: str, locked: ObjectLocked) -> Transfer:
    """Move `transfer` (claimed with `token`), whose replacing write was refused with `locked`, to the first
    free alternative key; the transfer as it is now. Raises LeaseLost when the claim was taken over,
    KeyTaken when every alternative is taken, the storage's errors."""
    storage = runtime.storage(transfer.storage)
    for candidate in alternative_keys(transfer.key):
        try:
            storage.stat(candidate)
            continue  # an object is there: never write over it (the file's own bytes are found at the move's end)
        except FileNotFoundError:
            pass
        moved = runtime.ledger.move_key(transfer.id, token, candidate)
        if moved is None:
            raise LeaseLost(f"transfer {transfer.id} was taken over while choosing a new key")
        if moved:
            log.warning("object_relocated", key=transfer.key, new_key=candidate, reason=str(locked))
            raw = {**transfer.raw, "key": candidate, "replaced_key": transfer.key, "replace": ""}
            return replace(transfer, key=candidate, raw=raw)
    raise KeyTaken(f"{storage.describe()}{transfer.key}: a retention period or a hold keeps the damaged object "
                   f"there ({locked}), and every alternative key up to {MAX_ALTERNATIVES} is taken") from locked
