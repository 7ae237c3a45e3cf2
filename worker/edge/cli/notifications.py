"""`archiver notifications …`: the notifications' outbox, each delivery and its attempts, and
sending failed ones again.

Exit codes: 1 something asked for was not done (an unknown id, a delivery not failed); 2 bad
arguments or configuration; 3 Redis unreachable.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from worker.clock import rfc3339
from worker.edge.cli._boot import celery_enqueue, err, ledger_settings, open_ledger, out, stream_settings
from worker.notify.delivery import endpoint_host
from worker.notify.outbox import STATES, Delivery, Outbox, endpoints

notifications_app = typer.Typer(help="Look at the notifications sent to [[notify]] endpoints.", no_args_is_help=True)


@notifications_app.command("list")
def list_notifications(
    failed: Annotated[bool, typer.Option("--failed", help="Only those given up on (state failed).")] = False,
    state: Annotated[str | None, typer.Option(help=f"Only this state: {', '.join(STATES)}.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line, with every attempt.")] = False,
) -> None:
    """List each event's delivery to each endpoint, oldest update first, with its last attempt."""
    if state is not None and state not in STATES:
        err.print(f"unknown state {state!r}; one of: {', '.join(STATES)}")
        raise typer.Exit(2)
    if failed and state not in (None, "failed"):
        err.print("give --failed or --state, not both")
        raise typer.Exit(2)
    settings = ledger_settings()
    outbox = Outbox(open_ledger(settings))
    hosts = {eid: endpoint_host(n.url) for eid, n in endpoints(settings.archive).items()}
    rows = [(d, outbox.event(d.event_id)) for d in outbox.iter_deliveries("failed" if failed else state)]
    if as_json:
        for delivery, event in rows:
            document = delivery.to_json() | {"endpoint_host": hosts.get(delivery.endpoint),
                                             "type": event.type if event else None,
                                             "subject": event.subject if event else None}
            sys.stdout.write(json.dumps(document) + "\n")
        return
    table = Table("id", "state", "type", "subject", "endpoint", "attempts", "last", "next_at")
    for delivery, event in rows:
        table.add_row(delivery.id, delivery.state, event.type if event else "?", event.subject if event else "?",
                      hosts.get(delivery.endpoint, f"(removed) {delivery.endpoint}"), str(delivery.attempts),
                      _last(delivery), rfc3339(delivery.next_at) if delivery.state == "pending" else "")
    out.print(table)


def _last(delivery: Delivery) -> str:
    if delivery.last_status is not None:
        shown = f"HTTP {delivery.last_status}"
        return shown if not delivery.last_error else delivery.last_error[:80]
    return (delivery.last_error or "")[:80]


@notifications_app.command("retry")
def retry_notifications(
    ids: Annotated[list[str], typer.Argument(help="Delivery ids (ev_…:<endpoint>), or event ids (ev_…: every "
                                                  "failed delivery of it).")],
) -> None:
    """Send failed notifications again (after fixing the endpoint), retried for notify_retry_for."""
    settings = stream_settings()  # it hands them to the workers: the Celery app needs the full settings
    outbox = Outbox(open_ledger(settings))
    retry_ms = int(settings.archive.notify_retry_for.total_seconds() * 1000)
    retried, missed = [], []
    failed = set(outbox.ids("failed"))
    for given in dict.fromkeys(ids):
        targets = [given] if ":" in given else [d for d in outbox.deliveries_of(given) if d in failed]
        done = [d for d in targets if outbox.retry(d, retry_ms)]
        retried += done
        if not done:
            missed.append(given)
    for given in missed:
        found = outbox.delivery(given) if ":" in given else None
        err.print(f"{given}: {found.state}, not failed; left as it is" if found
                  else f"{given}: no such delivery, or no failed delivery of that event")
    for did in retried:
        out.print(f"queued {did}", highlight=False)
    if retried:
        try:
            celery_enqueue()(retried)
        except Exception as exc:  # noqa: BLE001 - they are due in the ledger: the sweep queues them
            err.print(f"could not hand them to the workers now ({type(exc).__name__}: {exc}); they are due: "
                      "the scheduler's sweep queues them")
    if missed:
        raise typer.Exit(1)
