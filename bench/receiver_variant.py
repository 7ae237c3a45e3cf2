"""The receiver of `archiver web`, built the same way (worker.edge.web.app.create_app under uvicorn), with
parts switched off to measure what each one costs under load (case 4's findings):

    python -m bench.receiver_variant PORT [--no-enqueue] [--log-level warning] [--processes N]

``--no-enqueue`` replaces the Celery publish with nothing (the sweep would queue the transfers);
``--log-level warning`` drops the per-request ``webhook_recorded`` line; ``--processes N`` runs N
receiver processes on one listening socket (forked after it is bound, each with its own Redis and
broker connections), as ``uvicorn --workers`` would. Nothing in worker/ changes.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
from collections.abc import Sequence
from typing import Any

import uvicorn

from config import load_settings
from config.logging import configure_logging, register_secrets
from worker.edge.web.app import Enqueue, create_app
from worker.ledger.connection import connect_env
from worker.ledger.store import Ledger


def serve(args: argparse.Namespace, sock: socket.socket) -> None:
    """One receiver process on the shared socket."""
    settings = load_settings()
    register_secrets(settings.secrets())
    configure_logging(args.log_level, "json")
    ledger = Ledger(connect_env(settings.env, fail_fast=True))

    def nothing(_: Sequence[str]) -> None:
        return None

    enqueue: Enqueue = nothing
    if not args.no_enqueue:
        from tasks.app import enqueue as celery_enqueue  # noqa: PLC0415, TID251 - an edge, like the CLI

        enqueue = celery_enqueue
    app = create_app(settings, ledger, enqueue)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    server.run(sockets=[sock])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("port", type=int)
    parser.add_argument("--no-enqueue", action="store_true")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    sock = socket.create_server(("127.0.0.1", args.port), backlog=2048)
    if args.processes == 1:
        serve(args, sock)
        return
    children = []
    for _ in range(args.processes):
        if (pid := os.fork()) == 0:
            serve(args, sock)
            os._exit(0)
        children.append(pid)

    def stop(signum: int, _: Any) -> None:
        for pid in children:
            os.kill(pid, signum)

    signal.signal(signal.SIGTERM, stop)
    for pid in children:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
