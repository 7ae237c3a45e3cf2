"""check_key: the one rule for keys that every backend applies."""

from __future__ import annotations

import pytest

from tests.storage.conformance import HOSTILE_KEYS, ILLEGAL_KEYS
from worker.storage.keys import check_key, check_prefix


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_legal_keys_pass_unchanged(key: str) -> None:
    """Awkward but legal keys are returned exactly as given."""
    assert check_key(key) == key


@pytest.mark.parametrize("key", ILLEGAL_KEYS)
def test_illegal_keys_raise(key: str) -> None:
    """Empty, absolute, empty/./.. segments, NUL and backslash raise ValueError."""
    with pytest.raises(ValueError, match="storage key"):
        check_key(key)


@pytest.mark.parametrize(("prefix", "normal"), [("", ""), ("/", ""), ("a", "a/"), ("/a/b/", "a/b/")])
def test_prefix_normalised(prefix: str, normal: str) -> None:
    """A prefix becomes "" or "a/b/"."""
    assert check_prefix(prefix) == normal


def test_prefix_traversal_refused() -> None:
    """A prefix may not climb either."""
    with pytest.raises(ValueError):
        check_prefix("a/../b")
