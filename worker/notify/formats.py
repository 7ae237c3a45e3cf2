"""What a delivery's body is: the event as JSON (``json``), or a line of text for Slack (``slack``).

``json``: ``{"id", "type", "created_at", "data"}``; for a file event, ``data`` is the transfer as
`archiver transfers show --json` prints it (`Transfer.to_json`), as it was when the change was made;
for ``stream.failure``, the failure Stream reported, as noted (`Ledger.note_failure`); for
``session.archived``, ``{"call_cid", "session_id", "manifest_key", "files"}`` (`worker.sessions.complete`).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from worker.clock import rfc3339
from worker.ledger.models import Transfer
from worker.notify.outbox import Event

Format = Literal["json", "slack"]
CONTENT_TYPE = "application/json"

_VERBS = {
    "file.archived": "archived", "file.failed": "failed to archive", "file.lost": "lost (Stream deleted it first)",
    "file.at_risk": "at risk (Stream deletes it soon, not archived yet)",
}


def event_data(event: Event) -> dict[str, Any]:
    """The event's ``data``: the transfer's JSON object for a file event, else what was announced."""
    if event.type.startswith("file.") and "id" in event.data and "file_id" in event.data:
        return Transfer.from_hash({k: str(v) for k, v in event.data.items()}).to_json()
    return event.data


def body(event: Event, form: Format) -> bytes:
    """The bytes POSTed for `event` in the endpoint's format (what the signature covers)."""
    if form == "slack":
        return json.dumps({"text": slack_text(event)}).encode()
    document = {"id": event.id, "type": event.type, "created_at": rfc3339(event.created_at),
                "data": event_data(event)}
    return json.dumps(document, separators=(",", ":")).encode()


def slack_text(event: Event) -> str:
    """One line a person reads in a Slack channel."""
    data = event_data(event)
    if event.type in _VERBS:
        where = f"{data.get('storage')}:{data.get('key')}"
        line = f"{data.get('kind')} {data.get('filename')} of call {data.get('call_cid')} {_VERBS[event.type]}: {where}"
        if event.type == "file.archived":
            line += f" ({data.get('bytes')} bytes)"
        elif data.get("error"):
            line += f" ({data.get('error')})"
        return line
    if event.type == "session.archived":
        return (f"session {data.get('session_id')} of call {data.get('call_cid')} archived: "
                f"{len(data.get('files') or [])} file(s), manifest {data.get('manifest_key')}")
    if event.type == "stream.failure":
        return f"Stream reported a failure: {data.get('type') or data.get('kind')} of call {data.get('call_cid')}"
    return f"{event.type}: {json.dumps(data, sort_keys=True)}"
