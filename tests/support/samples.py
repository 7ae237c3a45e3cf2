"""Stream's sample payloads (tests/samples) with their times moved to now.

The receiver refuses a file that ended longer than `retention` ago (a replayed delivery), so a test
that posts a sample posts it with fresh times: every time in it is shifted by one whole number of
seconds, so that its latest is now (or up to a second before), keeping each one's form: an RFC 3339
string keeps its precision and zone designator, an integer of nanoseconds stays one. Nothing else
changes (filenames, URLs, ids).
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
NS = 1_000_000_000
_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")
_TIME_KEYS = ("_at", "_time")


def _is_time_key(key: str) -> bool:
    return key.endswith(_TIME_KEYS)


def _rfc3339_ns(text: str) -> int | None:
    match = _RFC3339.match(text)
    if match is None:
        return None
    whole, fraction, zone = match.groups()
    moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    return int(moment.timestamp()) * NS + int((fraction or "0")[:9].ljust(9, "0"))


def _shift_rfc3339(text: str, seconds: int) -> str:
    """`text` moved by whole `seconds`: its fraction digits and zone designator are kept as they are."""
    match = _RFC3339.match(text)
    assert match is not None
    whole, fraction, zone = match.groups()
    moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    moved = datetime.fromtimestamp(moment.timestamp() + seconds, moment.tzinfo)
    return moved.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + zone


def _times(value: Any, key: str = "") -> list[int]:
    """Every time in `value`, in nanoseconds since the epoch."""
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in _times(v, k)]
    if isinstance(value, list):
        return [t for v in value for t in _times(v, key)]
    if isinstance(value, str) and _is_time_key(key):
        found = _rfc3339_ns(value)
        return [] if found is None else [found]
    if isinstance(value, int) and not isinstance(value, bool) and _is_time_key(key):
        return [value]
    return []


def _shifted(value: Any, seconds: int, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _shifted(v, seconds, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_shifted(v, seconds, key) for v in value]
    if isinstance(value, str) and _is_time_key(key) and _RFC3339.match(value):
        return _shift_rfc3339(value, seconds)
    if isinstance(value, int) and not isinstance(value, bool) and _is_time_key(key):
        return value + seconds * NS
    return value


def shift_to(event: dict[str, Any], now: datetime) -> dict[str, Any]:
    """`event` with every time moved by the same whole seconds, its latest time to `now` (at most a
    second before)."""
    times = _times(event)
    if not times:
        return event
    seconds = math.floor(now.timestamp() - max(times) / NS)
    return dict(_shifted(event, seconds))


def fresh_event(name: str, now: datetime | None = None) -> dict[str, Any]:
    """Sample `name` (a file of tests/samples) as a dict, its times moved to `now` (default: now)."""
    event = json.loads((SAMPLES / name).read_text())
    assert isinstance(event, dict)
    return shift_to(event, now or datetime.now(UTC))


def fresh_sample(name: str, now: datetime | None = None) -> bytes:
    """Sample `name`'s bytes as a delivery would carry them, its times moved to `now`: the file's
    layout (indentation, key order) is kept, only the times' values change."""
    event = fresh_event(name, now)
    return (json.dumps(event, indent=2, ensure_ascii=False) + "\n").encode()


def stream_time(ago: timedelta = timedelta(0)) -> str:
    """The time `ago` before now as an RFC 3339 string, as Stream writes one (for hand-made events,
    which the receiver refuses as expired once they ended longer than `retention` ago)."""
    return (datetime.now(UTC) - ago).isoformat(timespec="milliseconds").replace("+00:00", "Z")
