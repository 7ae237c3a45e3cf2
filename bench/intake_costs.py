"""What one webhook costs the receiver, part by part: CPU milliseconds per call of each step that
`POST /webhooks/stream` runs, each called N times in a loop in this process (one thread, no
HTTP), against a fresh redis-server. Compared with the receiver's CPU per request in case 4,
the remainder is the HTTP stack (uvicorn's h11 protocol, FastAPI/Starlette middleware) and the
three hand-offs to anyio's thread pool per request.

Steps: `accept_delivery` (HMAC check, parse, the ledger's Lua intake), `enqueue` (Celery
``send_task`` of the id through kombu to Redis), `Stats.webhook` (the outcome counter, one Redis
pipeline), the ``webhook_recorded`` log line (structlog JSON, to a file as in the service), and
one `anyio.to_thread.run_sync` round trip from the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from contextlib import redirect_stderr
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread
from rich.console import Console
from rich.table import Table

from bench.destinations import make_workdir
from bench.service import Service, service


@dataclass(frozen=True)
class StepCost:
    step: str
    calls: int
    cpu_ms: float  # CPU milliseconds per call
    wall_ms: float


def measure(step: str, calls: int, action: Callable[[int], object]) -> StepCost:
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(calls):
        action(i)
    return StepCost(step, calls, (time.process_time() - cpu) * 1000 / calls,
                    (time.perf_counter() - wall) * 1000 / calls)


def thread_hops(calls: int) -> StepCost:
    """One anyio thread-pool round trip per call, from a running event loop."""
    async def hops() -> None:
        for _ in range(calls):
            await anyio.to_thread.run_sync(lambda: None)

    cpu, wall = time.process_time(), time.perf_counter()
    asyncio.run(hops())
    return StepCost("anyio to_thread round trip", calls, (time.process_time() - cpu) * 1000 / calls,
                    (time.perf_counter() - wall) * 1000 / calls)


def costs(svc: Service, calls: int, log_file: Path) -> list[StepCost]:
    """Each step `calls` times (the environment must already name this service's config)."""
    import structlog  # noqa: PLC0415 - after the environment is set

    from config import load_settings  # noqa: PLC0415
    from config.logging import configure_logging  # noqa: PLC0415
    from tasks.app import enqueue  # noqa: PLC0415, TID251 - an edge, like the CLI; it reads the settings at import
    from worker.intake.record import accept_delivery  # noqa: PLC0415
    from worker.ledger.connection import connect  # noqa: PLC0415
    from worker.ledger.store import Ledger  # noqa: PLC0415
    from worker.monitoring.stats import Stats  # noqa: PLC0415

    settings = load_settings()
    ledger = Ledger(connect(os.environ["REDIS_URL"]))
    deliveries = svc.deliveries(calls, b"x" * 1024, "costs")
    headers = [{k.lower(): v for k, v in d.headers.items()} for d in deliveries]
    ids: list[str] = []
    stats = Stats(ledger.redis, ledger.prefix)
    with log_file.open("w") as sink, redirect_stderr(sink):
        configure_logging("INFO", "json")
        log = structlog.get_logger("worker.edge.web.webhook")
        return [
            measure("accept_delivery (HMAC, parse, Lua intake)", calls,
                    lambda i: ids.extend(accept_delivery(settings, ledger, deliveries[i].body, headers[i]).to_queue)),  # type: ignore[union-attr]
            measure("enqueue (Celery send_task → Redis)", calls, lambda i: enqueue([ids[i]])),
            measure("Stats.webhook (Redis pipeline)", calls, lambda i: stats.webhook("accepted")),
            measure("log.info webhook_recorded (JSON)", calls,
                    lambda i: log.info("webhook_recorded", file_id=ids[i], new_file=True, transfer_ids=[ids[i]],
                                       webhook_id="0f8fad5b-d9cb-469f-a165-70867728950e")),
            thread_hops(calls),
        ]


def run(calls: int = 2000, workdir: Path | None = None) -> list[StepCost]:
    workdir = workdir or make_workdir()
    storage = {"name": "disk", "storage_type": "local", "bucket": str(workdir / "archive")}
    with service(workdir / "costs", storage, {"call_storage_key": ""}) as svc:
        ours = ("STREAM_", "REDIS_", "ARCHIVER_")
        os.environ.update({k: v for k, v in svc.processes.env.items() if k.startswith(ours)})
        return costs(svc, calls, workdir / "costs.log")


def table(results: list[StepCost]) -> Table:
    out = Table(title="The receiver's steps, one call at a time in one thread")
    for column in ("step", "calls", "CPU ms/call", "wall ms/call"):
        out.add_column(column, justify="left" if column == "step" else "right")
    for r in results:
        out.add_row(r.step, str(r.calls), f"{r.cpu_ms:.3f}", f"{r.wall_ms:.3f}")
    out.add_row("sum", "", f"{sum(r.cpu_ms for r in results):.3f}", f"{sum(r.wall_ms for r in results):.3f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000)
    Console(width=160).print(table(run(parser.parse_args().calls)))


if __name__ == "__main__":
    main()
