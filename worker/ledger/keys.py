"""Every Redis key the archiver uses, built in one place."""

from __future__ import annotations

DEFAULT_PREFIX = "archiver:"
