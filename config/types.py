"""The value types settings share: secrets (``env:NAME`` / ``file:/path``), durations, routes, strict tables."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretStr


def _resolve_secret(value: Any) -> Any:
    """Turn ``env:NAME`` / ``file:/path`` into the secret they point at."""
    if not isinstance(value, str):
        return value
    if value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set")
        return os.environ[name]
    if value.startswith("file:"):
        path = Path(value[5:])
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
    return value


Secret = Annotated[SecretStr, BeforeValidator(_resolve_secret)]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    """``"90s"``, ``"15m"``, ``"48h"``, ``"14d"``, ``"250ms"`` or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    raise ValueError(f"expected a duration such as '90s', '15m', '48h' or '14d', got {value!r}")


def format_duration(delta: timedelta) -> str:
    """`delta` as `parse_duration` reads it, in the largest unit that divides it: ``"15m"``, ``"1h"``, ``"250ms"``."""
    ms = round(delta.total_seconds() * 1000)
    for unit, factor in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % factor == 0:
            return f"{ms // factor}{unit}"
    return f"{ms}ms"


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]

Kind = Literal["recording", "transcription", "frame_recording", "stats_report"]
"""The kinds of file the archiver knows, as the ledger, the logs and the `kinds` setting spell them: one
entry each in the kinds table (`worker/files.py`), a test checks."""

Route = str | list[str]  # one storage name, or several (one transfer per destination)


def names_in(route: Route) -> list[str]:
    """The storage names of a route."""
    return [route] if isinstance(route, str) else list(route)


class Strict(BaseModel):
    """A TOML table: unknown keys are errors, and a value once read never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
