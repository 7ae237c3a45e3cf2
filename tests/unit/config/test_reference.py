"""The configuration reference (config/reference.py): built from each field's description, type and default."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from pydantic import BaseModel, ByteSize, Field

from config.archive import ArchiveConfig
from config.environment import Environment
from config.reference import _describe, _tables, _toml, render_reference


def test_every_setting_has_a_description() -> None:
    """Every environment variable and every key of every TOML table says what it is for."""
    models = [Environment, *(model for model, _, _ in _tables(ArchiveConfig, "", False))]
    for model in models:
        for name, field in model.model_fields.items():
            assert field.description and field.description.strip(), f"{model.__name__}.{name}"


def test_a_field_without_a_description_is_refused() -> None:
    class Undocumented(BaseModel):
        knob: int = 3

    with pytest.raises(ValueError, match=r"Undocumented\.knob has no Field\(description"):
        _describe(Undocumented, "knob", Undocumented.model_fields["knob"])


def test_a_row_shows_the_description_with_its_constraints() -> None:
    class Documented(BaseModel):
        knob: int = Field(default=3, ge=1, le=9, description="How far it turns.")

    assert _describe(Documented, "knob", Documented.model_fields["knob"]) == "How far it turns (≥ 1, ≤ 9)."


def test_values_are_written_as_in_the_toml_file() -> None:
    assert _toml(timedelta(seconds=90)) == '"90s"'
    assert _toml(timedelta(milliseconds=250)) == '"250ms"'
    assert _toml(timedelta(days=14)) == '"14d"'
    assert _toml(ByteSize(8 * 1024 * 1024)) == '"8MiB"'
    assert _toml(("a", "b")) == '["a", "b"]'
    assert _toml(False) == "false"


def test_rows_name_the_setting_its_type_and_default() -> None:
    reference = render_reference()
    assert '| `REDIS_URL` | string | `"redis://127.0.0.1:6379/0"` | The Redis that holds the ledger' in reference
    assert "| `STREAM_API_SECRET` | secret | **required** |" in reference
    assert '| `retention` | duration | `"14d"` | Stream deletes a file this long after it ended. |' in reference
    assert "### `[[storages]]`" in reference and "### `[storages.aws_s3]`" in reference


def test_config_imports_nothing_of_the_worker_or_tasks() -> None:
    """config is the bottom layer: importing all of it loads no module of worker/ or tasks/."""
    code = ("import sys, config, config.archive, config.celery, config.environment, config.errors, "
            "config.logging, config.reference, config.settings, config.storages, config.types; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('worker', 'tasks')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
