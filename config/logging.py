"""Logging: structlog for our code and the standard library's loggers (Celery, uvicorn, httpx).

JSON lines in production (or whenever stderr is not a terminal), readable lines on a terminal.
Every line, ours or a library's (warnings included), passes `scrub`:

- URL query strings and user info are cut (a signed URL is a credential);
- the values of signing query parameters (``sig=``, ``Signature=``, ``X-Amz-Signature=``,
  ``Expires=``, ...) are masked wherever they appear: a request line, a canonical request, a
  percent-encoded URL;
- every registered secret is masked, also JSON-, repr- and percent-escaped, and so are the secrets
  inside it (a service-account JSON's ``private_key``, a connection string's ``AccountKey``, a SAS
  token's ``sig``).

Tracebacks are plain text (never rich's, which prints local variables and wraps long values across
lines, out of reach of the masking), scrubbed before they are rendered and once more as a line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus

import structlog

_URL_QUERY = re.compile(r"""(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#"'<>]*)\?[^\s#"'<>]*""")
_USERINFO = re.compile(r"""(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/?#"'<>@]*@""")
_SIGNING_PARAMS = re.compile(
    r"""(?i)(?:(?<![\w-])|(?<=%3F)|(?<=%26))(sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature"""
    r"""|x-goog-credential|expires|key-pair-id|policy|access_token)(=|%3D)(?!\*\*\*)[^\s&"'<>;,%]+"""
)
# A link to a local file carries its credential in the path: /files/<payload>.<mac> (worker.links.served).
_FILE_LINK = re.compile(r"(/files/)[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_NESTED_SECRETS = {"private_key", "private_key_id", "client_secret", "refresh_token",  # JSON credentials
                   "accountkey", "sharedaccesssignature", "sharedaccesskey", "password", "sig"}
_secrets: set[str] = set()
_ordered: tuple[str, ...] = ()  # longest first, so that no longer form is left half-masked


def _inner_secrets(secret: str) -> Iterator[str]:
    """The secrets inside `secret`: a JSON object's key fields, a connection string's secret parts,
    a SAS token's ``sig``."""
    try:
        parsed = json.loads(secret)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        yield from (v for k, v in parsed.items() if isinstance(v, str) and k.lower() in _NESTED_SECRETS)
    for part in secret.split(";"):
        name, _, value = part.partition("=")
        if value and name.strip().lower() in _NESTED_SECRETS:
            yield value
    yield from parse_qs(secret.lstrip("?")).get("sig", [])


def _forms(secret: str) -> set[str]:
    """`secret` and the secrets inside it, as they may be written: raw, JSON-, repr- and percent-escaped."""
    found: set[str] = set()
    pending = [secret]
    while pending:
        value = pending.pop()
        if value not in found and len(value) >= 4:
            found.add(value)
            pending.extend(_inner_secrets(value))
    escaped = ({v, json.dumps(v)[1:-1], repr(v)[1:-1], quote(v, safe=""), quote_plus(v)} for v in found)
    return {form for forms in escaped for form in forms if len(form) >= 4}


def register_secrets(values: Iterable[str]) -> None:
    """Mask these values (and their escaped forms, and the secrets inside them) in every log line."""
    global _ordered
    for value in values:
        if value:
            _secrets.update(_forms(value))
    _ordered = tuple(sorted(_secrets, key=len, reverse=True))


def redact_url(url: str) -> str:
    """`url` without its query string (where a signed URL keeps its signature) and user info."""
    return _USERINFO.sub(r"\1", url.split("?", 1)[0].split("#", 1)[0])


def scrub(text: str) -> str:
    """`text` with URL query strings and user info removed, signing parameters, local file links' tokens and
    known secrets masked."""
    text = _USERINFO.sub(r"\1", _URL_QUERY.sub(r"\1", text))
    text = _SIGNING_PARAMS.sub(r"\1\2***", text)
    text = _FILE_LINK.sub(r"\1***", text)
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub_value(v) for v in value)
    if isinstance(value, BaseException):
        return scrub(f"{type(value).__name__}: {value}")
    return value


def scrub_processor(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if key != "exc_info":  # format_exc_info needs it as it is; its text is scrubbed after
            event[key] = _scrub_value(value)
    return event


class _ScrubbingFormatter(structlog.stdlib.ProcessorFormatter):
    """Scrubs the rendered line too: the last defence, tracebacks included."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Send everything through structlog; call once per process, before logging anything."""
    json_lines = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        scrub_processor,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if json_lines
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = _ScrubbingFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,  # the traceback as text, scrubbed before any escaping
            scrub_processor,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # warnings too go through the scrubbing handler
    for noisy in ("httpx", "httpcore", "botocore", "boto3", "s3transfer", "urllib3", "azure", "google"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
