"""The signature of a delivery: ``X-Archiver-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``.

The receiver recomputes it with the shared secret over the timestamp header, a dot and the raw body,
compares in constant time, and refuses a timestamp too far from its own clock (a replay).
"""

from __future__ import annotations

import hashlib
import hmac

EVENT_ID = "X-Archiver-Event-Id"
TIMESTAMP = "X-Archiver-Timestamp"
SIGNATURE = "X-Archiver-Signature"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=`` and the hex HMAC-SHA256 of ``"<timestamp>.<body>"`` keyed with `secret`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def headers(event_id: str, secret: str | None, timestamp: int, body: bytes, content_type: str) -> dict[str, str]:
    """Every header of a delivery; without a secret (a Slack endpoint may have none), unsigned."""
    found = {"Content-Type": content_type, EVENT_ID: event_id, TIMESTAMP: str(timestamp)}
    if secret:
        found[SIGNATURE] = signature(secret, timestamp, body)
    return found


def verify(secret: str, timestamp: str, body: bytes, signed: str, *, now: float, tolerance_s: float = 300) -> bool:
    """What a receiver does: the signature matches and the timestamp is within `tolerance_s` of `now`."""
    try:
        moment = int(timestamp)
    except ValueError:
        return False
    return abs(now - moment) <= tolerance_s and hmac.compare_digest(signature(secret, moment, body), signed)
