"""How long to wait before trying again: one backoff for every retry loop of the archiver.

The step doubles with each attempt (``first``, 2 × ``first``, 4 × ``first``…) up to ``cap``; the
wait is drawn in [half, full] of the step, so that processes failing together do not come back
together. Units are the caller's (seconds or milliseconds): the functions only multiply.

Its users: a transfer's next try (``worker.transfer.run``, kept in the ledger), a claim refused by a
busy storage (`jittered` alone), a call lookup while Stream is unavailable (``worker.intake.resolve``,
`jittered` alone), the Stream client's retries and 429s (``worker.stream.client``), the SQS intake
after a failed receive (``worker.intake.sqs``: the `step` alone, one poller has no one to spread
from). Not here: redis-py's own ``Retry`` for connection errors (``worker.ledger.connection``) and
the storage SDKs' retry settings, which those libraries apply themselves.
"""

from __future__ import annotations

import random

MAX_DOUBLINGS = 30  # 2**30 × any first wait is past every cap; more would only risk float overflow


def step(attempt: int, first: float, cap: float) -> float:
    """The un-jittered wait before try `attempt` + 1: `first` after the first failure (attempt 1),
    doubled per failure since, never above `cap`."""
    return min(cap, first * (1 << max(0, min(attempt - 1, MAX_DOUBLINGS))))


def jittered(wait: float, rng: random.Random | None = None) -> float:
    """`wait` drawn in [half, full] of it (`rng`: a seeded generator, for tests)."""
    draw = rng.uniform if rng is not None else random.uniform
    return wait * draw(0.5, 1.0)


def backoff(attempt: int, first: float, cap: float, rng: random.Random | None = None) -> float:
    """The wait before trying again after `attempt` failures: `step`, jittered."""
    return jittered(step(attempt, first, cap), rng)

