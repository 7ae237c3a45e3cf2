"""Links to files on local disk: tokens that `archiver web` serves at ``/files/<token>``.

A token names one storage, one key and an expiry (ms since the epoch), and carries an HMAC-SHA256 of
them keyed with the ledger's link key (``P link_key``: 32 random bytes, hex, set once with SET NX by
the first link made; never the Stream secret). Nothing else is reachable through ``/files/``: the
storage must be a local one of the receiver's configuration, and the key is checked like any
storage key (no ``..``, nothing outside the storage's directory; `LocalStorage.path`). A token that
was altered, made with another key, or has expired reads as None, whichever it was.

Both the expiry written and the one checked are Redis's clock (read in the same round trip as the
key), so a CLI on another machine and the receiver agree whatever their own clocks say. Deleting
``P link_key`` revokes every local link at once; the next link made sets a new key.

Format: ``<payload>.<mac>``, both unpadded base64url; the payload is the JSON ``[storage, key,
expires_ms]``, and the MAC covers ``archiver-file-link-v1:`` + payload (another version of the
format changes that prefix, so no token is ever read as another format's).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from worker.ledger.store import Ledger

_DOMAIN = b"archiver-file-link-v1:"
MAX_TOKEN = 8192  # characters: a 1024-byte key and a storage name make far less


@dataclass(frozen=True)
class FileToken:
    """What a token grants: the object at `key` in local storage `storage`, until `expires_ms`."""

    storage: str
    key: str
    expires_ms: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Raises ValueError (binascii.Error) for anything but unpadded base64url."""
    if not text or "=" in text:
        raise ValueError("not unpadded base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: str) -> bytes:
    return hmac.new(secret, _DOMAIN + payload.encode("ascii"), hashlib.sha256).digest()


def sign_token(secret: bytes, token: FileToken) -> str:
    """The token text for `token`, signed with `secret` (URL-safe: letters, digits, ``-_.``)."""
    payload = _b64(json.dumps([token.storage, token.key, token.expires_ms], separators=(",", ":")).encode())
    return f"{payload}.{_b64(_mac(secret, payload))}"


def read_token(secret: bytes, text: str, now_ms: int) -> FileToken | None:
    """What `text` grants, if it was signed with `secret` and has not expired at `now_ms`; else None
    (malformed, altered, another key, or expired: the caller cannot tell which, nor can the client)."""
    payload, dot, mac = text.partition(".")
    if not dot or len(text) > MAX_TOKEN:
        return None
    try:  # the MAC's text itself is compared: base64 ignores a last character's spare bits, this does not
        if not hmac.compare_digest(mac.encode("ascii"), _b64(_mac(secret, payload)).encode("ascii")):
            return None
        fields = json.loads(_unb64(payload))
    except (ValueError, binascii.Error, UnicodeError):
        return None
    if not (isinstance(fields, list) and len(fields) == 3 and isinstance(fields[0], str)
            and isinstance(fields[1], str) and type(fields[2]) is int):
        return None
    token = FileToken(fields[0], fields[1], fields[2])
    return token if now_ms < token.expires_ms else None


def signing_key(ledger: Ledger) -> tuple[bytes, int]:
    """The link key (set now if there is none) and Redis's time (ms), in one round trip."""
    pipe = ledger.redis.pipeline(transaction=False)
    pipe.set(ledger.keys.link_key, secrets.token_hex(32), nx=True)
    pipe.get(ledger.keys.link_key)
    pipe.time()
    _, key, now = pipe.execute()
    return _key_bytes(key), _ms(now)


def checking_key(ledger: Ledger) -> tuple[bytes | None, int]:
    """The link key (None when no link was ever made, or it was deleted) and Redis's time (ms)."""
    pipe = ledger.redis.pipeline(transaction=False)
    pipe.get(ledger.keys.link_key)
    pipe.time()
    key, now = pipe.execute()
    return (None if key is None else _key_bytes(key)), _ms(now)


def _key_bytes(value: str | bytes) -> bytes:
    return bytes.fromhex(value.decode() if isinstance(value, bytes) else value)


def _ms(time: tuple[int, int]) -> int:
    seconds, micros = time
    return int(seconds) * 1000 + int(micros) // 1000
