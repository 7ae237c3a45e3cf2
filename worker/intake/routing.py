"""Which storages a file goes to, most specific rule first.

1. per call: the key named by ``call_storage_key`` (default ``archive_storage``) in the call's
   ``custom`` data (read through Stream's GetCall) — a storage name or a list of names;
2. per call type: ``[call_types]``;
3. ``default_storage``.

A route may name several storages: one transfer per destination. The reserved name ``stream-s3``
means "leave it with Stream": that transfer is recorded as ``skipped`` with the rule that said so.
A name in a call's custom data that the configuration does not know is ignored with a warning (the
file then follows the next rule: archived somewhere beats lost).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from config import ArchiveConfig
from config.storages import STREAM_S3
from worker.files import StreamFile

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Route:
    storage: str
    skip_reason: str | None = None


def _call_choice(config: ArchiveConfig, call: Mapping[str, Any] | None) -> list[str]:
    """The storage names the call's custom data gives (known ones only), or []."""
    if call is None or not config.call_storage_key:
        return []
    custom = call.get("custom")
    value = custom.get(config.call_storage_key) if isinstance(custom, Mapping) else None
    names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    names = [n for n in names if isinstance(n, str) and n]
    known = {s.name for s in config.effective_storages()} | {STREAM_S3}
    unknown = [n for n in names if n not in known]
    if unknown:
        log.warning("call_route_unknown_storage", call_cid=call.get("cid"), storages=unknown,
                    key=config.call_storage_key)
    return list(dict.fromkeys(n for n in names if n in known))


def route(config: ArchiveConfig, file: StreamFile, call: Mapping[str, Any] | None = None) -> list[Route]:
    """The destinations of `file`; `call` is its GetCall ``call`` object when call routing is on."""
    names = _call_choice(config, call)
    rule = f"the call's custom.{config.call_storage_key}"
    if not names:
        names = config.route_names(file.call_type)
        rule = f"call_types.{file.call_type}" if file.call_type in config.call_types else "default_storage"
    return [
        Route(name, skip_reason=f"{rule} is {STREAM_S3!r}: the file stays with Stream") if name == STREAM_S3
        else Route(name)
        for name in names
    ]
