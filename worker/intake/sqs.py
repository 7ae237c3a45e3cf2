"""SQS intake: Stream events from an SQS queue (directly, or through an SNS topic) into the ledger.

Same rule as the webhook (worker/edge/web/webhook.py): record first, hand ids to the workers after. A message
is deleted only once the ledger holds what it announced (or it is ignored, noted, expired — a file
that ended longer than `retention` ago, never recorded — or can never succeed); while Redis is
unavailable it stays, and SQS delivers it again after the queue's visibility timeout. SQS messages
are not HMAC-signed: AWS IAM on the queue is the authentication.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3
import redis
import structlog

from config import Settings
from worker.errors import MalformedPayload, PayloadTooLarge
from worker.intake.record import Expired, FailureNoted, Recorded, enqueue_quietly, record_event
from worker.intake.webhook import MAX_BODY, decompress, load_object
from worker.ledger.models import Enqueue
from worker.ledger.store import Ledger
from worker.monitoring.stats import Stats
from worker.retry import step

log = structlog.get_logger(__name__)
SQSClient = Any  # boto3-stubs is installed for S3 only: the SQS client stays untyped
BACKOFF_FIRST, BACKOFF_CAP = 1.0, 60.0


@dataclass
class PollResult:
    """What one receive did with its messages."""

    received: int = 0
    recorded: int = 0  # a file new to the ledger
    known: int = 0  # a file the ledger already held (a redelivery, or the webhook got there first)
    ignored: int = 0
    failures_noted: int = 0
    expired: int = 0  # a file past its deadline (a replayed or very late message): not recorded
    malformed: int = 0
    not_recorded: int = 0  # left on the queue, to be delivered again
    kinds_recorded: list[str] = field(default_factory=list, compare=False)  # the kind of each new file


def _unwrap(text: str, where: str) -> bytes:
    """Raw JSON as is; otherwise base64 of gzip or of plain JSON. Raises MalformedPayload, PayloadTooLarge."""
    stripped = text.strip()
    if stripped.startswith("{"):
        return decompress(stripped.encode(), None)
    if len(stripped) > 2 * MAX_BODY:
        raise PayloadTooLarge(f"{where} is over {2 * MAX_BODY} characters")
    try:
        raw = base64.b64decode("".join(stripped.split()), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedPayload(f"{where} is neither JSON nor base64") from None
    return decompress(raw, None)  # gzip or not, told by its first bytes


def _json_object(text: str, where: str) -> dict[str, Any]:
    return load_object(_unwrap(text, where), where)


def decode_message(body: str) -> dict[str, Any]:
    """The Stream event an SQS message body carries: raw JSON, base64(gzip(JSON)) or base64(JSON),
    possibly inside an SNS envelope's ``Message``. Raises MalformedPayload with the reason (a body
    over MAX_BODY once inflated included)."""
    try:
        event = _json_object(body, "body")
        if "TopicArn" in event or event.get("Type") == "Notification":
            if event.get("Type") != "Notification":
                raise MalformedPayload(f"SNS {event.get('Type')!r} message carries no event")
            message = event.get("Message")
            if not isinstance(message, str):
                raise MalformedPayload("SNS envelope: Message missing or not a string")
            event = _json_object(message, "SNS Message")
    except PayloadTooLarge as exc:
        raise MalformedPayload(str(exc)) from exc
    if not isinstance(event.get("type"), str):
        raise MalformedPayload("type: missing or not a string")
    return event


def _handle(settings: Settings, ledger: Ledger, message: dict[str, Any], result: PollResult,
            to_queue: list[str]) -> None:
    """Record one message (after which it may be deleted). Raises redis.RedisError (nothing recorded)."""
    message_id = message.get("MessageId")
    try:
        outcome = record_event(settings, ledger, decode_message(str(message.get("Body", ""))))
    except MalformedPayload as exc:
        result.malformed += 1
        log.error("sqs_message_malformed", message_id=message_id, reason=str(exc),
                  receive_count=message.get("Attributes", {}).get("ApproximateReceiveCount"),
                  note="deleted: it can never be recorded")
        return
    if isinstance(outcome, Recorded):
        to_queue.extend(outcome.to_queue)
        result.recorded += outcome.new_file
        if outcome.new_file and outcome.kind is not None:
            result.kinds_recorded.append(outcome.kind)
        result.known += not outcome.new_file
        log.info("sqs_message_recorded", message_id=message_id, file_id=outcome.file_id,
                 new_file=outcome.new_file, transfer_ids=outcome.transfer_ids)
    elif isinstance(outcome, Expired):
        result.expired += 1
        log.warning("sqs_message_expired", message_id=message_id, file_id=outcome.file_id, call_cid=outcome.call_cid,
                    expires_at=outcome.expires_at.isoformat(), note="deleted: Stream no longer has the file")
    elif isinstance(outcome, FailureNoted):
        to_queue.extend(outcome.to_queue)
        result.failures_noted += 1
        log.info("sqs_failure_noted", message_id=message_id, call_cid=outcome.call_cid, kind=outcome.kind)
    else:
        result.ignored += 1
        log.info("sqs_message_ignored", message_id=message_id, type=outcome)


def _delete(client: SQSClient, queue_url: str, messages: Sequence[dict[str, Any]]) -> None:
    """DeleteMessageBatch, ten at a time; an entry SQS refuses is logged (it comes back, then is known).
    Raises botocore errors."""
    for start in range(0, len(messages), 10):
        chunk = messages[start:start + 10]
        entries = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(chunk)]
        response = client.delete_message_batch(QueueUrl=queue_url, Entries=entries)
        for failed in response.get("Failed", []):
            log.warning("sqs_delete_failed", message_id=chunk[int(failed["Id"])].get("MessageId"),
                        code=failed.get("Code"), error=failed.get("Message"))


def poll_once(settings: Settings, ledger: Ledger, enqueue: Enqueue, client: SQSClient, queue_url: str, *,
              wait_seconds: int = 20, max_messages: int = 10, stats: Stats | None = None) -> PollResult:
    """Receive up to `max_messages` (1–10, long polling `wait_seconds`), record each, delete what the
    ledger now holds, then hand new ids to `enqueue` (best effort) and count the new files by kind
    in `stats`. Once Redis fails, the rest of the batch is left on the queue. Raises botocore errors
    from ReceiveMessage and DeleteMessageBatch."""
    response = client.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=max_messages,
                                      WaitTimeSeconds=wait_seconds,
                                      MessageSystemAttributeNames=["ApproximateReceiveCount"])
    messages: list[dict[str, Any]] = response.get("Messages", [])
    result = PollResult(received=len(messages))
    done: list[dict[str, Any]] = []
    to_queue: list[str] = []
    for index, message in enumerate(messages):
        try:
            _handle(settings, ledger, message, result, to_queue)
            done.append(message)
        except redis.RedisError as exc:
            result.not_recorded += len(messages) - index
            log.error("sqs_message_not_recorded", message_id=message.get("MessageId"),
                      reason=f"ledger unavailable: {exc}", left_on_queue=len(messages) - index)
            break
        except Exception as exc:  # noqa: BLE001 - one bad message must not hold up the others
            result.not_recorded += 1
            log.exception("sqs_message_failed", message_id=message.get("MessageId"), error=str(exc))
    try:
        _delete(client, queue_url, done)
    finally:
        enqueue_quietly(enqueue, to_queue)
        if stats is not None:
            for kind in result.kinds_recorded:
                stats.file_received(kind)
    return result


def run_sqs_intake(settings: Settings, ledger: Ledger, enqueue: Enqueue, client: SQSClient, queue_url: str,
                   stop: threading.Event, *, wait_seconds: int = 20) -> None:
    """Poll `queue_url` until `stop` is set (noticed between long polls). Raises nothing: SQS, network
    and ledger errors are logged and retried after a capped exponential backoff."""
    failures = 0
    stats = Stats(ledger.redis, ledger.prefix)  # the process's one
    log.info("sqs_intake_started", queue_url=queue_url, wait_seconds=wait_seconds)
    while not stop.is_set():
        try:
            result = poll_once(settings, ledger, enqueue, client, queue_url, wait_seconds=wait_seconds, stats=stats)
            failures = failures + 1 if result.not_recorded else 0
        except Exception as exc:  # noqa: BLE001 - transient by assumption: never end the intake
            failures += 1
            log.error("sqs_receive_failed", queue_url=queue_url, error=str(exc), failures=failures)
        if failures:
            stop.wait(step(failures, BACKOFF_FIRST, BACKOFF_CAP))
    log.info("sqs_intake_stopped", queue_url=queue_url)


def sqs_client(region: str | None, endpoint_url: str | None) -> SQSClient:
    """A boto3 SQS client using the default credential chain (`endpoint_url`: moto, localstack).
    Raises botocore.exceptions.NoRegionError when no region is given or configured."""
    return boto3.session.Session().client("sqs", region_name=region, endpoint_url=endpoint_url)
