"""`archiver try`'s two conversations: delivering the signed webhooks, then watching the ledger.

`deliver` posts one event as Stream does (``X-Signature``: HMAC-SHA256 hex of the body with the
first secret of STREAM_API_SECRET; ``X-Api-Key``; a fresh ``X-Webhook-Id``) and keeps the
receiver's answer, or the connection error. `watch` polls the ledger until every transfer of both
files has ended (archived, failed, skipped, lost) or the time is up; `explain` says, for one file,
where it was archived or why it is not (yet).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from config import ArchiveConfig, StorageConfig
from worker.edge.trial.sample import Sample, Trial
from worker.intake.webhook import sign
from worker.ledger.models import TERMINAL, Transfer
from worker.ledger.store import Ledger

POLL_SECONDS = 0.1
_SCHEMES = {"s3": "s3", "gcs": "gs", "abs": "abs"}


@dataclass(frozen=True)
class Delivery:
    """The receiver's answer to one event: `status` None when it could not be reached."""

    event_type: str
    status: int | None
    reason: str
    file_id: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def deliver(url: str, event: dict[str, Any], api_key: str, secret: str, timeout: float = 10.0) -> Delivery:
    """POST `event` to the receiver at `url`, signed with `secret`, as Stream delivers a webhook."""
    body = json.dumps(event, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "X-Api-Key": api_key, "X-Signature": sign(body, secret),
               "X-Webhook-Id": str(uuid.uuid4())}
    kind = str(event["type"])
    try:  # no environment proxy: the receiver is usually local or inside the same network
        response = httpx.post(url, content=body, headers=headers, timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        return Delivery(kind, None, f"{type(exc).__name__}: {exc}")
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    answer = answer if isinstance(answer, dict) else {}
    reason = str(answer.get("error") or answer.get("status") or response.text[:200] or response.reason_phrase)
    file_id = answer.get("file_id")
    return Delivery(kind, response.status_code, reason, file_id if isinstance(file_id, str) else None)


@dataclass(frozen=True)
class FileState:
    """What the ledger holds about one sample file: its record (empty when absent) and transfers."""

    sample: Sample
    file_id: str
    record: dict[str, str]
    transfers: tuple[Transfer, ...]

    @property
    def routing(self) -> bool:
        """Still waiting for its destinations (call-level routing)."""
        return self.record.get("routing") == "pending"

    @property
    def ended(self) -> bool:
        """Every destination reached an end (archived or not): nothing more to wait for."""
        return bool(self.transfers) and not self.routing and all(t.state in TERMINAL for t in self.transfers)

    @property
    def archived(self) -> bool:
        """Archived at every destination, with the sample's own SHA-256."""
        return self.ended and all(t.state == "archived" and t.sha256 == self.sample.sha256 for t in self.transfers)


def snapshot(ledger: Ledger, trial: Trial) -> list[FileState]:
    """Both files as the ledger holds them now."""
    states = []
    for sample in trial.samples:
        file_id = sample.stream_file(trial.call_cid).file_id
        transfers = (ledger.get(tid) for tid in ledger.transfers_of(file_id))
        states.append(FileState(sample, file_id, ledger.file(file_id), tuple(t for t in transfers if t is not None)))
    return states


def watch(ledger: Ledger, trial: Trial, deadline: float) -> list[FileState]:
    """Poll the ledger until both files' transfers have ended or `deadline` (time.monotonic) passes."""
    while True:
        states = snapshot(ledger, trial)
        if all(s.ended for s in states) or time.monotonic() >= deadline:
            return states
        time.sleep(POLL_SECONDS)


def location(archive: ArchiveConfig | None, transfer: Transfer) -> str:
    """Where `transfer` writes, as far as this configuration tells: a local file's path (relative
    roots resolved from here, as `archiver serve` resolves them from its own directory), else the
    store's URL; just the key without a configuration."""
    storage = _storage(archive, transfer.storage)
    if storage is None:
        return f"key {transfer.key}"
    if storage.storage_type == "local":
        return os.path.abspath(Path(storage.bucket) / storage.path / transfer.key)
    scheme = _SCHEMES.get(storage.storage_type, storage.storage_type)
    return f"{scheme}://{storage.bucket}/{storage.path}{transfer.key}"


def _storage(archive: ArchiveConfig | None, name: str) -> StorageConfig | None:
    if archive is None:
        return None
    try:
        return archive.storage(name)
    except KeyError:
        return None


def explain(state: FileState, transfer: Transfer) -> str:
    """Why one transfer of a file is not archived (yet), in a line."""
    attempt = f"attempt {transfer.attempts}" if transfer.attempts else "not started"
    error = f": {transfer.error}" if transfer.error else ""
    reason = f" ({transfer.reason})" if transfer.reason else ""
    if transfer.state == "archived":
        return (f"archived, but with SHA-256 {transfer.sha256}, not the sample's {state.sample.sha256}")
    if transfer.state == "queued" and not transfer.error:
        return f"queued, {attempt}: no worker has taken it (is `archiver worker` running, on this Redis?)"
    if transfer.state in ("queued", "transferring"):
        return f"{transfer.state}, {attempt}{reason}{error}"
    return f"{transfer.state}{reason}{error}"


def explain_waiting(state: FileState, delivery: Delivery | None) -> str:
    """Why a file has no transfer yet: not in this ledger, or still being routed."""
    if not state.record:
        told = f", though the receiver answered {delivery.status} {delivery.reason}" if delivery else ""
        return (f"not in the ledger at REDIS_URL{told}: the service must use the same REDIS_URL as this "
                "command")
    if state.routing:
        why = state.record.get("routing_error") or "no worker has routed it yet (is `archiver worker` running?)"
        return f"routing: waiting for its destinations: {why}"
    return "recorded without any destination"
