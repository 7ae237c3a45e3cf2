"""What each fault test observed, for `scripts/chaos`'s table (fault, sent, archived, lost, duplicates,
time to recover). Tests call `chaos_report.record(...)`; with CHAOS_REPORT set to a path, each record is
appended there as one JSON line; without it, records are only checked for consistency."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class FaultOutcome:
    fault: str
    sent: int
    archived: int
    lost: int
    duplicates: int
    recover_seconds: float


class ChaosReport:
    def __init__(self, path: str | None) -> None:
        self._path = Path(path) if path else None

    def record(self, fault: str, *, sent: int, archived: int, duplicates: int, recover_seconds: float) -> None:
        """One fault's outcome; `lost` is what was sent and not archived."""
        outcome = FaultOutcome(fault, sent, archived, sent - archived, duplicates, round(recover_seconds, 1))
        if self._path is not None:
            with self._path.open("a") as out:
                out.write(json.dumps(asdict(outcome)) + "\n")


@pytest.fixture
def chaos_report() -> ChaosReport:
    return ChaosReport(os.environ.get("CHAOS_REPORT"))
