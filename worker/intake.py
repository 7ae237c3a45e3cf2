"""From a verified ready event to ledger entries: one file, one transfer per destination."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from config import ArchiveConfig, Settings
from worker.files import StreamFile, transfer_id
from worker.keys import object_key
from worker.ledger import Ledger, NewTransfer, now_ms
from worker.routing import route
from worker.webhooks import authenticate, decompress, parse_event, ready_file


@dataclass(frozen=True)
class Recorded:
    """What intake did: `new_file` decides 202 vs 200; `to_queue` are transfers just created."""

    file_id: str
    new_file: bool
    transfer_ids: list[str]
    to_queue: list[str] = field(default_factory=list)


def plan_transfers(archive: ArchiveConfig, file: StreamFile) -> list[NewTransfer]:
    """One transfer per destination the routing rules give `file`."""
    key = object_key(archive.key_template, file)
    return [
        NewTransfer(
            id=transfer_id(file.file_id, r.storage),
            storage=r.storage,
            key="" if r.skip_reason else key,
            state="skipped" if r.skip_reason else "queued",
            error=r.skip_reason,
        )
        for r in route(archive, file)
    ]


def record_file(archive: ArchiveConfig, ledger: Ledger, file: StreamFile) -> Recorded:
    """Record `file` and its transfers atomically; known ones are left untouched."""
    now = now_ms()
    transfers = plan_transfers(archive, file)
    redispatch = int(archive.redispatch_after.total_seconds() * 1000)
    intake = ledger.record(file, transfers, expires_at=file.expires_at(archive.retention),
                           dispatch_at=now + redispatch, now=now)
    ids = [t.id for t in transfers]
    queued = [t.id for t in transfers if t.state == "queued"] if intake.transfers_created else []
    return Recorded(file.file_id, intake.file_is_new, ids, queued)


def accept_delivery(settings: Settings, ledger: Ledger, body: bytes,
                    headers: Mapping[str, str]) -> Recorded | str:
    """Check and record one webhook delivery; returns the ignored event type for other events.

    Raises InvalidWebhook subclasses (nothing recorded) and redis errors (nothing answered 2xx).
    """
    raw = decompress(body, headers.get("content-encoding"))
    env = settings.env
    authenticate(raw, headers, env.stream_api_key, env.stream_api_secret.get_secret_value())
    event = parse_event(raw)
    file = ready_file(event)
    if file is None:
        return str(event["type"])
    return record_file(settings.archive, ledger, file)
