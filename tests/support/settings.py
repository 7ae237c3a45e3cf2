"""Writing archiver TOML files for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(tomli_w.dumps(config))
    return path
