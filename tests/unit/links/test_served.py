"""Tokens of links to local files: what they grant, and every way a token is not valid (all read alike);
the link key in a real Redis."""

from __future__ import annotations

import base64
import json

import pytest

from worker.ledger.store import Ledger
from worker.links.served import MAX_TOKEN, FileToken, _mac, checking_key, read_token, sign_token, signing_key

SECRET = bytes(range(32))
NOW = 1_800_000_000_000
GRANT = FileToken("disk", "default/c1/rec é ?#%41.mp4", NOW + 60_000)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_token_grants_exactly_what_was_signed_until_it_expires() -> None:
    """Storage, key (any characters) and expiry come back as signed, only with the same key, only before
    the expiry (the clock is given, not read)."""
    token = sign_token(SECRET, GRANT)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert read_token(SECRET, token, NOW) == GRANT
    assert read_token(SECRET, token, GRANT.expires_ms - 1) == GRANT
    assert read_token(SECRET, token, GRANT.expires_ms) is None
    assert read_token(bytes(32), token, NOW) is None


def test_an_altered_token_is_not_valid() -> None:
    """Another storage, key or expiry under the old MAC; a MAC cut, padded, flipped, or spelled otherwise
    with the same bytes (its last character's spare bits): none is valid."""
    token = sign_token(SECRET, GRANT)
    payload, mac = token.split(".")
    for fields in (["local2", GRANT.key, GRANT.expires_ms], ["disk", "../../etc/passwd", GRANT.expires_ms],
                   ["disk", GRANT.key, GRANT.expires_ms * 2]):
        assert read_token(SECRET, f"{b64(json.dumps(fields).encode())}.{mac}", NOW) is None
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    spare_bits = mac[:-1] + alphabet[alphabet.index(mac[-1]) ^ 1]  # decodes to the same 32 bytes: still refused
    assert base64.urlsafe_b64decode(spare_bits + "=") == base64.urlsafe_b64decode(mac + "=")
    for forged in (f"{payload}.{spare_bits}", f"{payload}.{flipped}", f"{payload}.{mac[:-1]}", f"{payload}.{mac}=",
                   f"{payload}.", f"{payload}{mac}", f".{mac}", token + ".x", token.replace(".", "..")):
        assert read_token(SECRET, forged, NOW) is None, forged


@pytest.mark.parametrize("fields", [
    ["disk", "k"], ["disk", "k", 1, 2], {"s": "disk"}, ["disk", 5, NOW + 1], [None, "k", NOW + 1],
    ["disk", "k", str(NOW + 1)], ["disk", "k", True], ["disk", "k", float(NOW + 1)],
])
def test_a_well_signed_payload_of_the_wrong_shape_is_not_valid(fields: object) -> None:
    """Even with a correct MAC (the key leaked into a bug), only [str, str, int] grants anything."""
    payload = b64(json.dumps(fields).encode())
    mac = sign_token(SECRET, GRANT).split(".")[1]  # the right MAC for another payload
    assert read_token(SECRET, f"{payload}.{b64(_mac(SECRET, payload))}", NOW) is None  # its own MAC: the shape refused
    assert read_token(SECRET, f"{payload}.{mac}", NOW) is None


@pytest.mark.parametrize("text", ["", ".", "..", "not-a-token", "%2e%2e%2fetc", "../../etc/passwd", "é.é",
                                  "\x00.\x00", "a" * (MAX_TOKEN + 1)])
def test_garbage_is_not_valid(text: str) -> None:
    """Whatever a client sends, nothing is granted and nothing raises."""
    assert read_token(SECRET, text, NOW) is None


def test_the_link_key_is_made_once_and_deleting_it_revokes_every_link(ledger: Ledger) -> None:
    """The first link sets a random 32-byte key (SET NX); later ones reuse it; the receiver reads it with
    Redis's time; deleted, it reads as none (no link valid), and the next link sets a new one."""
    assert checking_key(ledger)[0] is None
    first, now = signing_key(ledger)
    assert len(first) == 32 and abs(now - ledger.redis.time()[0] * 1000) < 5000
    assert signing_key(ledger)[0] == first == checking_key(ledger)[0]
    assert ledger.redis.get(ledger.keys.link_key) == first.hex()
    token = sign_token(first, FileToken("disk", "k", now + 60_000))
    ledger.redis.delete(ledger.keys.link_key)
    assert checking_key(ledger)[0] is None
    second, now = signing_key(ledger)
    assert second != first and read_token(second, token, now) is None
