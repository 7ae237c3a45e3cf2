"""The one backoff (worker/retry.py): doubling per attempt, capped, jittered in [half, full] of the step."""

from __future__ import annotations

import random

import pytest

from worker.retry import backoff, jittered, step


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    waits = [backoff(n, 1_000, 60_000) for n in range(1, 12)]
    assert 500 <= waits[0] <= 1_000
    assert 4_000 <= waits[3] <= 8_000
    assert all(30_000 <= w <= 60_000 for w in waits[7:])


def test_the_step_doubles_from_the_first_wait_until_the_cap() -> None:
    assert [step(n, 0.5, 8.0) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert [step(n, 1.0, 60.0) for n in (1, 6, 7)] == [1.0, 32.0, 60.0]


def test_no_failure_yet_waits_the_first_step_and_endless_failures_never_overflow() -> None:
    assert step(0, 1_000, 60_000) == step(-3, 1_000, 60_000) == 1_000
    assert step(100_000, 0.5, 30.0) == 30.0  # 429s in a row, however many
    assert step(100_000, 1, 2**40) == 2**30  # the doublings stop at MAX_DOUBLINGS


@pytest.mark.parametrize("attempt", [1, 2, 5, 9, 40])
def test_every_wait_lies_in_half_to_full_of_its_step(attempt: int) -> None:
    rng = random.Random(attempt)
    full = step(attempt, 0.5, 8.0)
    waits = [backoff(attempt, 0.5, 8.0, rng) for _ in range(500)]
    assert all(full / 2 <= w <= full for w in waits)
    assert max(waits) - min(waits) > full / 4  # spread out, not one value


def test_a_seeded_generator_gives_the_same_waits() -> None:
    first = [backoff(n, 1_000, 60_000, random.Random(7)) for n in range(1, 10)]
    assert first == [backoff(n, 1_000, 60_000, random.Random(7)) for n in range(1, 10)]
    assert jittered(3_000, random.Random(7)) == 3_000 * random.Random(7).uniform(0.5, 1.0)


def test_the_numbers_the_archiver_used_before_are_kept() -> None:
    """Each caller's step and draw are what its own hand-written backoff gave."""
    rng, again = random.Random(1), random.Random(1)
    assert backoff(3, 0.5, 8.0, rng) == min(8.0, 0.5 * 2**2) * again.uniform(0.5, 1.0)  # Stream client
    assert int(backoff(4, 10_000, 900_000, rng)) == int(80_000 * again.uniform(0.5, 1.0))  # a transfer's retry
    assert step(3, 1.0, 60.0) == min(60.0, 1.0 * 2**2)  # SQS intake
