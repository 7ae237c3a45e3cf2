"""`archiver link TRANSFER_ID [--ttl 15m]`: a short-lived download URL of an archived file.

The URL is the only line on stdout (``curl -o file "$(archiver link t_…)"``); where it points and
when it expires go to stderr. ``--ttl`` longer than ``max_link_ttl`` is cut to it, and stderr says so.
The link is a bearer credential until it expires: whoever holds it downloads the file.

Exit codes: 1 no link (no such transfer, not archived, its object gone, a storage that cannot sign,
local disk without ``public_url``, the store refused or failed); 2 a bad ``--ttl`` or configuration;
3 Redis unreachable.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Annotated

import redis
import typer

from config.types import format_duration, parse_duration
from worker.clock import rfc3339
from worker.edge.cli._boot import err, ledger_settings, open_ledger


def _ttl(text: str) -> timedelta:
    """`--ttl` as a duration; stop (exit 2) when it is not a positive one."""

    try:
        ttl = parse_duration(text)
    except ValueError as exc:
        err.print(f"--ttl: {exc}", highlight=False)
        raise typer.Exit(2) from None
    if ttl <= timedelta(0):
        err.print("--ttl must be a positive duration, such as 15m", highlight=False)
        raise typer.Exit(2)
    return ttl


def link_command(
    transfer_id: Annotated[str, typer.Argument(help="An archived transfer's id (t_…).")],
    ttl: Annotated[str, typer.Option("--ttl", help="How long the link works (e.g. 90s, 15m, 1h); at most "
                                                    "max_link_ttl.")] = "15m",
) -> None:
    """Print a short-lived download URL of an archived file, alone on stdout (details on stderr)."""
    from worker.edge.web import paths  # noqa: PLC0415
    from worker.errors import LinkUnavailable, StorageRefused, StorageUnavailable  # noqa: PLC0415
    from worker.links import LinkMaker  # noqa: PLC0415

    wanted = _ttl(ttl)
    settings = ledger_settings()
    longest = settings.archive.max_link_ttl
    if wanted > longest:
        err.print(f"--ttl {format_duration(wanted)} is longer than max_link_ttl ({format_duration(longest)}): the "
                  f"link lasts {format_duration(longest)}", highlight=False)
    ledger = open_ledger(settings)
    maker = LinkMaker(settings.archive, ledger, paths.FILES)
    try:
        transfer = ledger.get(transfer_id)
        if transfer is None:
            err.print(f"no transfer {transfer_id!r}", highlight=False)
            raise typer.Exit(1)
        link = maker.link(transfer, min(wanted, longest))
    except (LinkUnavailable, StorageRefused, StorageUnavailable) as exc:
        err.print(f"no link: {exc}", highlight=False)
        raise typer.Exit(1) from None
    except redis.RedisError as exc:
        err.print(f"[bold red]Redis failed:[/] {exc}", highlight=False)
        raise typer.Exit(3) from None
    finally:
        maker.close()
    err.print(f"{transfer.call_cid} {transfer.filename} at {link.storage}: {link.key}", highlight=False, markup=False)
    err.print(f"expires at {rfc3339(link.expires_at)}; until then anyone with this URL can download the file",
              highlight=False)
    sys.stdout.write(link.url + "\n")
