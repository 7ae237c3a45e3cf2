"""Logging: structlog for our code and the standard library's loggers (Celery, uvicorn, httpx).

JSON lines in production (or whenever stderr is not a terminal), readable lines on a terminal.
Every line, ours or a library's, passes `scrub`: query strings are cut from URLs (a signed URL
is a credential) and every configured secret value is masked.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

_URL_QUERY = re.compile(r"""(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#"'<>]*)\?[^\s#"'<>]*""")
_secrets: set[str] = set()


def register_secrets(values: Iterable[str]) -> None:
    """Mask these values wherever they would appear in a log line."""
    _secrets.update(v for v in values if v and len(v) >= 4)


def redact_url(url: str) -> str:
    """`url` without its query string (where a signed URL keeps its signature)."""
    return url.split("?", 1)[0].split("#", 1)[0]


def scrub(text: str) -> str:
    """`text` with URL query strings removed and known secrets masked."""
    text = _URL_QUERY.sub(r"\1", text)
    for secret in _secrets:
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
        structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer(colors=False)
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
            *([structlog.processors.format_exc_info] if json_lines else []),
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "botocore", "boto3", "s3transfer", "urllib3", "azure", "google"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
