"""Which storage a file goes to: per call type, else the default.

The reserved name ``stream-s3`` means "leave it with Stream": the transfer is recorded as
``skipped`` with that reason, so the ledger still shows the file was seen.
"""

from __future__ import annotations

from dataclasses import dataclass

from config import ArchiveConfig
from config.settings import STREAM_S3
from worker.files import StreamFile


@dataclass(frozen=True)
class Route:
    storage: str
    skip_reason: str | None = None


def route(config: ArchiveConfig, file: StreamFile) -> list[Route]:
    """The destinations of `file`, most specific rule first."""
    name = config.call_types.get(file.call_type, config.default_storage)
    if name == STREAM_S3:
        rule = f"call_types.{file.call_type}" if file.call_type in config.call_types else "default_storage"
        return [Route(name, skip_reason=f"{rule} is {STREAM_S3!r}: the file stays with Stream")]
    return [Route(name)]
