"""The signature of a delivery (worker/notify/signing.py), checked as an app would check it."""

from __future__ import annotations

import hashlib
import hmac

from worker.notify.signing import headers, signature, verify

BODY = b'{"id":"ev_1","type":"file.archived"}'


def test_the_signature_is_the_hex_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(b"s3cret", b"1767225600." + BODY, hashlib.sha256).hexdigest()
    assert signature("s3cret", 1767225600, BODY) == f"sha256={expected}"


def test_the_headers_carry_the_event_id_the_timestamp_and_the_signature() -> None:
    sent = headers("ev_1", "s3cret", 1767225600, BODY, "application/json")
    assert sent == {"Content-Type": "application/json", "X-Archiver-Event-Id": "ev_1",
                    "X-Archiver-Timestamp": "1767225600", "X-Archiver-Signature": signature("s3cret", 1767225600, BODY)}
    assert "X-Archiver-Signature" not in headers("ev_1", None, 1767225600, BODY, "application/json")


def test_verify_refuses_another_body_another_secret_and_an_old_timestamp() -> None:
    signed = signature("s3cret", 1000, BODY)
    assert verify("s3cret", "1000", BODY, signed, now=1010)
    assert not verify("s3cret", "1000", BODY + b" ", signed, now=1010)
    assert not verify("other", "1000", BODY, signed, now=1010)
    assert not verify("s3cret", "1000", BODY, signed, now=1000 + 301)
    assert not verify("s3cret", "soon", BODY, signed, now=1000)
