"""`archiver try`: a signed sample recording and transcription through a running service, end to end.

In the spirit of ``stripe trigger``: it serves two sample files from a port of its own
(`worker.edge.trial.sample`), allows the worker to download exactly those two URLs for a while (one-file
permissions in the ledger, `worker.intake.permits`, written *before* the webhooks go out), sends Stream's
``call.recording_ready`` and ``call.transcription_ready`` for them, signed, to the receiver's
``/webhooks/stream``, then watches the ledger and prints where each file was archived and its
SHA-256, or exactly why not. The permissions are removed when it ends.

It needs STREAM_API_KEY and STREAM_API_SECRET (to sign as Stream does) and REDIS_URL (the ledger
the service writes); the configuration file, when there is one, only to say where files went.

Exit codes: 0 both files archived; 1 not archived (refused, failed, or not done in time); 2 bad
arguments or configuration; 3 the receiver or Redis unreachable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import redis
import typer
from rich.console import Console

from config import ArchiveConfig, ConfigError, Environment, Settings
from config.archive import load_archive_config
from config.environment import load_environment
from config.logging import redact_url, register_secrets, scrub
from worker.edge.trial.report import Delivery, FileState, deliver, explain, explain_waiting, location, snapshot, watch
from worker.edge.trial.sample import SampleServer, Trial, make_trial, ready_event
from worker.edge.web import paths
from worker.intake import permits
from worker.ledger.connection import connect_env
from worker.ledger.store import Ledger

DEFAULT_URL = f"http://127.0.0.1:8000{paths.WEBHOOK}"
PERMIT_MARGIN_S = 30  # the permissions outlive the wait a little: a download may be under way
out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)


def try_command(
    url: Annotated[str, typer.Option("--url", help="The receiver's webhook URL.")] = DEFAULT_URL,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds to wait for both files.")] = 60.0,
    serve_host: Annotated[str, typer.Option(
        "--serve-host", help="Address to serve the sample from and to put in its URL (the worker must reach it)."
    )] = "127.0.0.1",
) -> None:
    """Send a signed sample recording and transcription to a running service and show where they were archived."""
    started = time.monotonic()
    env, archive = _configuration()
    ledger = _ledger(env)
    try:
        server = SampleServer(serve_host)
    except OSError as exc:
        err.print(f"cannot serve the sample on {serve_host}: {exc.strerror or exc}", markup=False)
        raise typer.Exit(2) from None
    try:
        with server:
            trial = make_trial(server.base_url, datetime.now(UTC))
            server.serve(trial.samples)
            code = _run(Attempt(env, archive, ledger, server, trial), url, started + timeout)
    except redis.RedisError as exc:
        err.print(f"lost Redis at REDIS_URL ({redact_url(env.redis_url)}): {scrub(str(exc))}", markup=False)
        code = 3
    finally:
        ledger.redis.close()
    if code:
        raise typer.Exit(code)
    out.print(f"both files archived in {time.monotonic() - started:.1f} s")


def _configuration() -> tuple[Environment, ArchiveConfig | None]:
    """The environment (exit 2 without it); the configuration only to describe where files went."""
    try:
        env = load_environment()
    except ConfigError as exc:
        err.print(f"configuration error: {exc}", markup=False)
        raise typer.Exit(2) from None
    try:
        archive: ArchiveConfig | None = load_archive_config(env.archiver_config)
    except ConfigError as exc:
        err.print(f"note: the configuration cannot be read, so only storage names and keys are shown: {exc}",
                  markup=False)
        archive = None
    register_secrets(Settings(env=env, archive=archive or ArchiveConfig()).secrets())
    return env, archive


def _ledger(env: Environment) -> Ledger:
    try:
        client = connect_env(env, name="archiver-try")
        client.ping()
    except (redis.RedisError, ConfigError) as exc:
        err.print(f"cannot reach Redis at REDIS_URL ({redact_url(env.redis_url)}), the ledger the "
                  f"service writes: {scrub(str(exc))}", markup=False)
        raise typer.Exit(3) from None
    return Ledger(client)


@dataclass(frozen=True)
class Attempt:
    """One run of the command: what it read, and what it serves."""

    env: Environment
    archive: ArchiveConfig | None
    ledger: Ledger
    server: SampleServer
    trial: Trial


def _run(attempt: Attempt, url: str, deadline: float) -> int:
    """Allow, send, watch, report; the exit code."""
    trial, ledger = attempt.trial, attempt.ledger
    ttl_ms = int((deadline - time.monotonic() + PERMIT_MARGIN_S) * 1000)
    for sample in trial.samples:  # before any webhook: the worker may start at once
        permits.grant(ledger, sample.url, trial.call_cid, ttl_ms)
    try:
        out.print(f"trial call {trial.call_cid}: serving its recording and transcription from "
                  f"{attempt.server.base_url} (the worker may download these two files only)", markup=False)
        deliveries = _send(attempt.env, trial, url)
        if deliveries is None:
            return 3
        if len(deliveries) < len(trial.samples) or not all(d.accepted for d in deliveries.values()):
            return 1
        missing = [s for s in snapshot(ledger, trial) if not s.record]
        if missing:  # the receiver records a file before it answers 2xx: this is another ledger
            return _report(missing, deliveries, attempt.server, attempt.archive)
        out.print(f"waiting up to {max(0.0, deadline - time.monotonic()):.0f} s for the worker…", markup=False)
        states = watch(ledger, trial, deadline)
        return _report(states, deliveries, attempt.server, attempt.archive)
    finally:
        permits.revoke(ledger, [s.url for s in trial.samples])


def _send(env: Environment, trial: Trial, url: str) -> dict[str, Delivery] | None:
    """Deliver both events; None when the receiver cannot be reached (what to do is printed)."""
    deliveries: dict[str, Delivery] = {}
    for sample in trial.samples:
        event = ready_event(trial, sample, datetime.now(UTC))
        delivery = deliver(url, event, env.stream_api_key, env.stream_api_secrets[0])
        deliveries[sample.kind] = delivery
        if delivery.status is None:
            err.print(f"cannot reach the receiver at {redact_url(url)}: {delivery.reason}\n"
                      "Start the service in another shell with `scripts/run` (or `archiver serve`), or give its "
                      "webhook URL with --url.", markup=False)
            return None
        out.print(f"sent {delivery.event_type} → {delivery.status} {delivery.reason}", markup=False)
        if delivery.status == 401:
            err.print(f"the receiver refused the webhook (401): {delivery.reason}\n"
                      "STREAM_API_KEY and STREAM_API_SECRET here must be those the service runs with "
                      "(the first secret signs).", markup=False)
            return deliveries
        if not delivery.accepted:
            err.print(f"the receiver refused the webhook ({delivery.status}): {delivery.reason}", markup=False)
            return deliveries
    return deliveries


def _report(states: list[FileState], deliveries: dict[str, Delivery], server: SampleServer,
            archive: ArchiveConfig | None) -> int:
    """Print each file's outcome; 0 when both are archived."""
    for state in states:
        kind = state.sample.kind.ljust(13)
        if not state.transfers:
            out.print(f"{kind} NOT archived: {explain_waiting(state, deliveries.get(state.sample.kind))}",
                      markup=False)
        for transfer in state.transfers:
            if state.archived:
                out.print(f"{kind} archived to {transfer.storage}: {location(archive, transfer)}\n"
                          f"{'':13} sha256 {transfer.sha256}, {transfer.bytes} bytes", markup=False)
            else:
                out.print(f"{kind} NOT archived to {transfer.storage}: {explain(state, transfer)}", markup=False)
        fetched = server.fetched.get(state.sample.path, 0)
        if not state.archived:
            out.print(f"{'':13} the worker downloaded the sample {fetched} time(s)", markup=False)
    if all(s.archived for s in states):
        return 0
    late = any(s.record and not s.ended for s in states)
    err.print("not archived" + (" in time (--timeout)" if late else "") + ": see above", markup=False)
    return 1
