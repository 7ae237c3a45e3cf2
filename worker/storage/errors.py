"""What every backend does with a failure at its edge: one table, one scrubber, one retry policy.

A backend reduces its SDK's error to an HTTP status (0: no answer), its store's error code ("" when
there is none) and the store's message; its own `ErrorTable` (first matching `Rule` wins, else the
table's default) says which `worker.errors` exception that is, and why (`worker.errors.StorageReason`).
Which codes mean what is the backend's business: its table sits in its own ``errors`` module.

Messages name the storage, the action and the object; what comes from the store or the SDK passes a
`Scrubber` first, so that no configured secret (nor, where the SDK quotes URLs, a query string: a
session URI or a SAS is itself a credential) reaches a message or a log line.

Retries: each SDK tries a request a few times by itself (`SDK_ATTEMPTS`, `SDK_BACKOFF`; GCS's
library retries by time, `sdk_retry_deadline`); beyond that the ledger retries the whole transfer.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from config import TransferTuning
from worker.errors import (
    KeyTaken,
    ObjectLocked,
    StorageReason,
    StorageRefused,
    StorageUnavailable,
    VerificationFailed,
)

SDK_ATTEMPTS = 3  # tries of one request, the first included (S3's total_max_attempts; Azure retries 2)
SDK_BACKOFF = 1  # seconds between two tries (Azure's LinearRetry, with as much jitter either way: 0-2 s)

Failure = StorageRefused | StorageUnavailable | VerificationFailed | FileNotFoundError
_QUERY = re.compile(r"\?[^\s'\"<>)]*=[^\s'\"<>)]*")  # "?a=b&c=d", not a key's lone "?"


def sdk_retry_deadline(tuning: TransferTuning) -> float:
    """Seconds after which a library that retries by time (GCS's) gives up: two connect timeouts."""
    return 2 * tuning.connect_timeout.total_seconds()


@dataclass(frozen=True)
class Outcome:
    """What a failure becomes: the exception class and, for StorageRefused / StorageUnavailable, why."""

    kind: type[Failure]
    reason: StorageReason = "other"

    def error(self, message: str) -> Failure:
        if issubclass(self.kind, StorageRefused | StorageUnavailable):
            return self.kind(message, reason=self.reason)
        return self.kind(message)


def refused(reason: StorageReason) -> Outcome:
    return Outcome(StorageRefused, reason)


def unavailable(reason: StorageReason) -> Outcome:
    return Outcome(StorageUnavailable, reason)


CHECKSUM_MISMATCH = Outcome(VerificationFailed, "checksum_rejected")  # the store found a checksum wrong
TAKEN = Outcome(KeyTaken, "key_taken")  # the store refused a create-only write: an object holds the key
LOCKED = Outcome(ObjectLocked, "object_locked")  # a retention period or a hold protects the object
LOCKED_HINT = "a retention period or a hold protects this object: the store keeps it as it is until they end"
TAKEN_HINT = "an object is already at this key, and a create-only write never replaces one"
CONDITION_HINT = ('if it is the create-only condition that the store does not take, set create_only = "head" for '
                  "this storage (see `archiver storage check`)")
MISSING = Outcome(FileNotFoundError)  # a rule with it applies only where the call allows "no such key"


@dataclass(frozen=True)
class Rule:
    """`outcome` for an answer whose code is in `codes` or whose status is in `statuses`, and whose
    lowercased message matches `words` when given."""

    outcome: Outcome
    codes: Container[str] = frozenset()
    statuses: Container[int] = frozenset()
    words: str | None = None  # a regular expression

    def matches(self, code: str, status: int, message: str) -> bool:
        hit = code in self.codes or status in self.statuses
        return hit and (self.words is None or re.search(self.words, message.lower()) is not None)


SERVER_ERRORS = range(500, 600)


class ErrorTable:
    """A backend's rules, in order, and what any other answer is."""

    def __init__(self, *rules: Rule, default: Outcome = Outcome(StorageRefused)) -> None:
        self.rules, self.default = rules, default

    def outcome(self, code: str, status: int, message: str = "", *, missing: bool = False) -> Outcome:
        """The first rule's outcome that matches; FileNotFoundError only when `missing` allows it."""
        for rule in self.rules:
            if (missing or rule.outcome.kind is not FileNotFoundError) and rule.matches(code, status, message):
                return rule.outcome
        return self.default


class Scrubber:
    """Removes secrets (as they are, and as they appear inside a URL) from text bound for an error
    message or a log line; with `queries`, every query string with a value too (``?***``)."""

    def __init__(self, secrets: Iterable[str] = (), *, queries: bool = False) -> None:
        found = {s for s in secrets if s}
        found |= {quote(s, safe="") for s in found}
        self._secrets = sorted(found, key=len, reverse=True)  # longest first: a key inside a connection string
        self._queries = queries

    def with_secrets(self, *more: str) -> Scrubber:
        """A scrubber that also hides `more` (e.g. a signed source URL for one copy)."""
        return Scrubber([*self._secrets, *more], queries=self._queries)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _QUERY.sub("?***", text) if self._queries else text


def public_url(url: str) -> str:
    """`url` without user info, query string (a signature) or fragment: what logs and messages show."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment=""))
