"""Who may read what operators read: the status page behind ARCHIVER_STATUS_TOKEN, /metrics behind
ARCHIVER_METRICS_TOKEN (when set).

The status token is sent as ``Authorization: Bearer <token>`` or as the password of HTTP basic auth
(any user); the metrics token as a bearer token only (Prometheus' ``authorization`` setting). Tokens
are compared in constant time, and a refusal says how to send the token, never the token itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

STATUS_CHALLENGE = {"WWW-Authenticate": 'Basic realm="archiver"'}
METRICS_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="archiver-metrics"'}
HOW_TO_SEND = "send ARCHIVER_STATUS_TOKEN as `Authorization: Bearer …` or as the basic-auth password"


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def _given(header: str | None) -> str | None:
    """The token an Authorization header carries (bearer, or basic auth's password); None when none."""
    scheme, _, value = (header or "").strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
            return None
        _, sep, password = decoded.partition(":")
        return password if sep and password else None
    return None


def authorized(header: str | None, token: str) -> bool:
    """True when `header` (an Authorization header) carries `token`: as a bearer token, or as the
    password of basic auth. Constant time in the token (hashes of equal length are compared)."""
    given = _given(header)
    return bool(token) and given is not None and same_token(given, token)


def same_token(given: str, token: str) -> bool:
    """Whether `given` is `token`, in constant time whatever their lengths (their hashes are compared);
    for every token the receiver checks (the status page's, /metrics')."""
    return hmac.compare_digest(_digest(given), _digest(token))


def status_refusal(header: str | None) -> str:
    """Why a request for the status page without the right token is refused (401): no token sent, and
    how to send it; or a token that is not the one configured."""
    if _given(header) is None:
        return f"this page needs the status token: {HOW_TO_SEND}"
    return f"wrong token: the token sent is not ARCHIVER_STATUS_TOKEN ({HOW_TO_SEND})"


def metrics_refusal(header: str | None, token: str) -> str | None:
    """Why a /metrics request may not have the figures (None: it may)."""
    scheme, _, sent = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not sent.strip():
        return "/metrics needs the metrics token: send ARCHIVER_METRICS_TOKEN as `Authorization: Bearer …`"
    if not same_token(sent.strip(), token):
        return "wrong token: the token sent is not ARCHIVER_METRICS_TOKEN"
    return None
