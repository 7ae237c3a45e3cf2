"""`max_concurrency` in a `[[storages]]` entry (config/settings.py) and how it reaches the claim."""

from __future__ import annotations

from typing import Any

import pytest

from config import ConfigError


def local(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "storage_type": "local", "bucket": "/tmp/x", **extra}  # noqa: S108 - never written


def test_max_concurrency_is_optional_and_positive(make_settings: Any) -> None:
    settings = make_settings(storages=[local("a", max_concurrency=2), local("b")], default_storage="a")
    assert [s.max_concurrency for s in settings.archive.storages] == [2, None]


@pytest.mark.parametrize("bad", [0, -1, "2", True])
def test_max_concurrency_rejects_what_is_not_a_positive_integer(make_settings: Any, bad: Any) -> None:
    with pytest.raises(ConfigError, match=r"storages\[0\]\.max_concurrency"):
        make_settings(storages=[local("a", max_concurrency=bad)], default_storage="a")
