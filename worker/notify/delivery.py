"""Delivering a notification: claim it, POST it, record the attempt, back off or give up.

At least once: an answer 2xx is delivered; any other answer, a timeout or a refused connection is
tried again with the one backoff (`worker.retry`, from ``retry_backoff`` up to ``retry_backoff_max``)
until ``notify_retry_for`` has passed since the event (then ``failed``, shown by `archiver
notifications list --failed`). The claim is a lease of ``transfer_lease``, and every request ends
within half of it (a shorter read timeout if need be), so a delivery is never sent by two workers at
once unless one of them died; a dead worker's delivery is due again when its lease runs out.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import httpx
import structlog

from config import ArchiveConfig
from config.logging import scrub
from worker.ledger.store import Ledger
from worker.notify.formats import CONTENT_TYPE, body
from worker.notify.outbox import Outbox, endpoints
from worker.notify.signing import headers
from worker.retry import backoff

log = structlog.get_logger(__name__)
FILE_EVENTS = ("file.archived", "file.failed", "file.lost")
ANSWER_SHOWN = 200  # characters of a refusing answer's body kept with the attempt


class Notifier:
    """Sends the outbox's deliveries to the configured endpoints (one per worker process)."""

    def __init__(self, ledger: Ledger, archive: ArchiveConfig, client: httpx.Client | None = None) -> None:
        self.outbox = Outbox(ledger)
        self.archive = archive
        self.endpoints = endpoints(archive)
        self.lease_ms = int(archive.transfer_lease.total_seconds() * 1000)
        read = min(archive.transfer.read_timeout.total_seconds(), self.lease_ms / 2000)
        timeout = httpx.Timeout(read, connect=min(archive.transfer.connect_timeout.total_seconds(), read))
        self.client = client or httpx.Client(timeout=timeout, trust_env=False, follow_redirects=False)

    def due_after_transfer(self, transfer_id: str) -> list[str]:
        """The deliveries a transfer's end just announced, to hand to the workers at once."""
        if not self.endpoints:
            return []
        return [d for kind in FILE_EVENTS for d in self.outbox.due_for(kind, transfer_id)]

    def deliver(self, delivery_id: str) -> str:
        """One attempt at `delivery_id` if it is due and no one else is at it; its state after."""
        claimed = self.outbox.claim(delivery_id, self.lease_ms)
        if not claimed.claimed:
            return claimed.status
        delivery = self.outbox.delivery(delivery_id)
        event = self.outbox.event(delivery.event_id) if delivery else None
        endpoint = self.endpoints.get(delivery.endpoint) if delivery else None
        if event is None or endpoint is None:
            state = self.outbox.finish(delivery_id, claimed.token, ok=False, give_up=True,
                                       error="its endpoint is no longer configured" if event else "its event is gone")
            log.error("notification_failed", delivery_id=delivery_id, error="endpoint or event gone")
            return state
        stamp = int(time.time())
        payload = body(event, endpoint.format)
        secret = endpoint.secret.get_secret_value() if endpoint.secret else None
        status: int | None = None
        try:
            answer = self.client.post(endpoint.url, content=payload,
                                      headers=headers(event.id, secret, stamp, payload, CONTENT_TYPE))
            status, ok = answer.status_code, 200 <= answer.status_code < 300
            error = "" if ok else scrub(f"HTTP {status}: {answer.text[:ANSWER_SHOWN]}")
        except httpx.HTTPError as exc:
            ok, error = False, scrub(f"{type(exc).__name__}: {exc}")
        first_ms = self.archive.retry_backoff.total_seconds() * 1000
        wait_ms = backoff(claimed.attempt, first_ms, self.archive.retry_backoff_max.total_seconds() * 1000)
        state = self.outbox.finish(delivery_id, claimed.token, ok=ok, status=status, error=error,
                                   retry_in_ms=int(wait_ms))
        fields = {"delivery_id": delivery_id, "event_id": event.id, "event_type": event.type,
                  "endpoint": f"{endpoint_host(endpoint.url)}#{delivery.endpoint if delivery else ''}",
                  "attempt": claimed.attempt, "status": status}
        if state == "delivered":
            log.info("notification_delivered", **fields)
        elif state == "failed":
            log.error("notification_failed", error=error, **fields)
        else:
            log.warning("notification_retry", error=error, retry_in_s=round(wait_ms / 1000, 1), **fields)
        return state

    def close(self) -> None:
        self.client.close()


def endpoint_host(url: str) -> str:
    """What logs and listings show of an endpoint's URL: its host (a path or query may hold a secret)."""
    return urlsplit(url).netloc.rsplit("@", 1)[-1]
