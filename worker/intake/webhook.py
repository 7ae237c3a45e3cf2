"""Stream webhook deliveries: decompress, authenticate, parse.

Order matters: the body is gunzipped (bounded, so a small gzip bomb cannot grow past the limit),
``X-Api-Key`` is compared, then ``X-Signature`` (lowercase hex HMAC-SHA256 of the *uncompressed*
body keyed with the API secret) is checked in constant time, and only then is JSON parsed. While a
secret is being rotated, STREAM_API_SECRET holds several, and a signature made with any of them is
accepted (each one compared, in constant time, every time).

Everything after the signature is still treated as hostile (a leaked secret, a bug upstream): every
flaw is a MalformedPayload (HTTP 400, nothing recorded), never an unexpected exception. JSON nested
deeper than `MAX_DEPTH`, integers too long to convert, text that is not valid Unicode (unpaired
surrogates, which Redis and the storages cannot encode) and timestamps outside the years 1970-9000
are refused; values echoed in error messages are cut to a few dozen characters. Timestamps come in
every form Stream's SDKs read (RFC 3339, integer, float or numeric-string nanoseconds), and gzip is
told by its magic bytes, not by ``Content-Encoding`` (see `decompress`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import zlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from worker.errors import BadCredentials, MalformedPayload, PayloadTooLarge
from worker.files import ArtefactKind, Kind, StreamFile, artefact, filename_in, ready_artefact

MAX_BODY = 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"  # RFC 1952
MAX_DEPTH = 32  # Stream's events nest about 5 deep
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)
EARLIEST_NS = 10**17  # 1973-03-03 in nanoseconds; 1.7e9 s, 1.7e12 ms and 1.7e15 us are all below it
NANOSECONDS = re.compile(r"[0-9]{1,30}")  # ASCII digits only: int() would also take "١٢" and "1_0"


def decompress(body: bytes, content_encoding: str | None, limit: int = MAX_BODY) -> bytes:
    """Return the uncompressed body; raise PayloadTooLarge past `limit`, MalformedPayload if broken.

    gzip is recognised by its first bytes (1f 8b), as Stream's SDKs do, not by the header: proxies
    and frameworks strip or apply ``Content-Encoding`` on their way. A gzip body is inflated whatever
    the header says; any other body is read as it is, unless the header names a compression and the
    body is not JSON either (then the reason says so, rather than a signature mismatch).
    """
    if body.startswith(GZIP_MAGIC):
        return _gunzip(body, limit)
    if len(body) > limit:
        raise PayloadTooLarge(f"body is over {limit} bytes")
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity") or body.lstrip(b" \t\r\n").startswith(b"{"):
        return body  # plain JSON, even marked gzip: something on the way inflated it and kept the header
    if encoding in ("gzip", "x-gzip"):
        raise MalformedPayload("body is marked Content-Encoding: gzip but is neither gzip (it does not start "
                               "with the bytes 1f 8b) nor a JSON object")
    raise MalformedPayload(f"unsupported Content-Encoding {shown(encoding)}")


def _gunzip(body: bytes, limit: int) -> bytes:
    """`body` inflated, never past `limit` (a small gzip bomb stops there)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise MalformedPayload(f"body starts like gzip (1f 8b) but is not valid gzip: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"uncompressed body is over {limit} bytes")
    if not inflater.eof:
        raise MalformedPayload("gzip body is truncated")
    if inflater.unused_data:
        raise MalformedPayload("bytes follow the gzip body")
    return out


def shown(value: Any, limit: int = 60) -> str:
    """`value` for an error message: its repr, cut to about `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def sign(body: bytes, secret: str) -> str:
    """Stream's webhook signature of `body`."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def authenticate(body: bytes, headers: Mapping[str, str], api_key: str, secret: str | Sequence[str]) -> None:
    """Raise BadCredentials unless X-Api-Key matches and X-Signature signs `body` with `secret` (or,
    while a secret is rotated, with any of several)."""
    given_key = headers.get("x-api-key", "")
    if not given_key:
        raise BadCredentials("X-Api-Key header is missing (Stream sends the app's API key in it)")
    if not hmac.compare_digest(given_key.encode(), api_key.encode()):
        raise BadCredentials("X-Api-Key does not match this app's API key")
    signature = headers.get("x-signature", "").strip().lower()
    if not signature:
        raise BadCredentials("X-Signature header is missing")
    if not signed_by_any(body, signature, [secret] if isinstance(secret, str) else list(secret)):
        raise BadCredentials("X-Signature does not match the body")


def signed_by_any(body: bytes, signature: str, secrets: Sequence[str]) -> bool:
    """Whether `signature` is `body`'s signature with one of `secrets`. Every secret is compared, in
    constant time, whatever the outcome of the others: the time taken tells nothing about which one
    matched, or how far."""
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(signature.encode(), sign(body, secret).encode())
    return matched


def parse_timestamp(value: Any, field: str) -> datetime:
    """A timestamp in any of the forms Stream's SDKs read, as UTC: an RFC 3339 string (any precision),
    or nanoseconds since the epoch as an integer, a float or a string of digits. Between 1970 and
    9000 (so that any deadline computed from it stays representable); a number also from 10**17 ns
    (1973-03-03) on, since anything smaller is seconds, milliseconds or microseconds sent as
    nanoseconds, whose deadline would lie in 1970."""
    if isinstance(value, bool):
        raise MalformedPayload(f"{field}: expected a timestamp, got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MalformedPayload(f"{field}: timestamp {shown(value)} is not a number of nanoseconds")
        # a float holds ~256 ns of precision here: 1.768250683205e18 is ...204999936, so round to the microsecond
        parsed = _from_nanoseconds((int(value) + 500) // 1000 * 1000, value, field)
    elif isinstance(value, int):
        parsed = _from_nanoseconds(value, value, field)
    elif isinstance(value, str) and NANOSECONDS.fullmatch(value.strip()):
        parsed = _from_nanoseconds(int(value.strip()), value, field)
    elif isinstance(value, str):
        parsed = _parse_rfc3339(value, field)
    else:
        raise MalformedPayload(f"{field}: expected an RFC 3339 string or nanoseconds (a number or a string of "
                               f"digits), got {shown(value)}")
    if not EARLIEST <= parsed < LATEST:
        raise MalformedPayload(f"{field}: timestamp {shown(value)} is out of range")
    return parsed


def _from_nanoseconds(nanoseconds: int, value: Any, field: str) -> datetime:
    """`nanoseconds` since the epoch (`value`: as sent, for the message), to the microsecond."""
    if nanoseconds < EARLIEST_NS:
        raise MalformedPayload(f"{field}: timestamp {shown(value)} is out of range (nanoseconds before 1973; "
                               "seconds, milliseconds or microseconds are not accepted)")
    seconds, nanos = divmod(nanoseconds, 1_000_000_000)
    try:
        return datetime.fromtimestamp(seconds, UTC).replace(microsecond=nanos // 1000)
    except (OverflowError, OSError, ValueError):
        raise MalformedPayload(f"{field}: timestamp {shown(value)} is out of range") from None


def _parse_rfc3339(text: str, field: str) -> datetime:
    cleaned = text.strip().replace("z", "Z")
    if "." in cleaned:  # Python parses at most 6 fractional digits; Stream sends 9
        head, _, tail = cleaned.partition(".")
        digits = len(tail) - len(tail.lstrip("0123456789"))
        cleaned = f"{head}.{tail[:min(digits, 6)]}{tail[digits:]}"
    try:
        parsed = datetime.fromisoformat(cleaned)
    except ValueError:
        raise MalformedPayload(f"{field}: {shown(text)} is not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise MalformedPayload(f"{field}: {shown(text)} has no time zone")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # "0001-01-01T00:00:00+01:00" is before year 1 in UTC
        raise MalformedPayload(f"{field}: timestamp {shown(text)} is out of range") from None


def load_object(raw: bytes, where: str = "body") -> dict[str, Any]:
    """`raw` as a JSON object, no deeper than MAX_DEPTH, all valid Unicode; MalformedPayload naming
    `where` otherwise."""
    try:
        value = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of 5000 digits
        raise MalformedPayload(f"{where} is not valid JSON: {shown(str(exc), 120)}") from None
    except RecursionError:
        raise MalformedPayload(f"{where} nests deeper than {MAX_DEPTH} levels") from None
    if not isinstance(value, dict):
        raise MalformedPayload(f"{where} is not a JSON object")
    check_tree(value)
    return value


def parse_event(body: bytes) -> dict[str, Any]:
    """The event object; MalformedPayload unless the body is a JSON object (see `load_object`) with a
    string `type` (and a string `call_cid` when there is one)."""
    event = load_object(body)
    if not isinstance(event.get("type"), str):
        raise MalformedPayload("type: missing or not a string")
    if "call_cid" in event and not isinstance(event["call_cid"], str):
        raise MalformedPayload("call_cid: not a string")
    return event


def check_tree(value: Any) -> None:
    """MalformedPayload when parsed JSON nests deeper than MAX_DEPTH or holds text that is not valid
    Unicode (an unpaired surrogate from a ``\\ud800`` escape), in a key or a value."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise MalformedPayload(f"body nests deeper than {MAX_DEPTH} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedPayload(f"body holds text that is not valid Unicode: {shown(text)}") from None


def _text(obj: Mapping[str, Any], field: str, where: str, *, required: bool = True) -> str | None:
    value = obj.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise MalformedPayload(f"{where}{field}: missing or not a non-empty string")
    _check_text(value)  # also for items that did not come through parse_event (ListRecordings, SQS)
    return value


def ready_file(event: Mapping[str, Any]) -> StreamFile | None:
    """The file a ready event announces, or None for an event type the archiver ignores."""
    kind = ready_artefact(event["type"])
    if kind is None:
        return None
    call_cid = _text(event, "call_cid", "")
    assert call_cid is not None
    call_type, _, call_id = call_cid.partition(":")
    if not call_type or not call_id:
        raise MalformedPayload(f"call_cid: {shown(call_cid)} is not '<type>:<id>'")
    if kind.payload_key is None:  # the event's own fields describe the file (a frame recording)
        return file_from_item(call_cid, kind.name, event, "", event)
    item = event.get(kind.payload_key)
    if not isinstance(item, dict):
        raise MalformedPayload(f"{kind.payload_key}: missing or not an object")
    return file_from_item(call_cid, kind.name, item, f"{kind.payload_key}.", event)


def file_from_item(call_cid: str, kind: Kind, item: Mapping[str, Any], where: str = "",
                   event: Mapping[str, Any] | None = None) -> StreamFile:
    """A CallRecording / CallTranscription object (from an event, or ListRecordings), or a frame
    recording's or stats report's event, as a StreamFile: its fields are those the kinds table names. Raises
    MalformedPayload naming the field (prefixed with `where`)."""
    outer, spec = event or {}, artefact(kind)
    url, filename = _source(spec, item, where)
    start, end = spec.time_fields
    return StreamFile(
        call_cid=call_cid,
        kind=kind,
        filename=filename,
        url=url,
        start_time=parse_timestamp(item.get(start), where + start),
        end_time=parse_timestamp(item.get(end), where + end),
        session_id=_text(item, "session_id", where, required=False),
        recording_type=_text(item, "recording_type", where, required=False)
        or _text(outer, "recording_type", "", required=False),
        egress_id=_text(outer, "egress_id", "", required=False),
        url_at=_event_time(event),
    )


def _source(spec: ArtefactKind, item: Mapping[str, Any], where: str) -> tuple[str, str]:
    """The file's URL and filename: a file Stream's API serves (a stats report) has no URL, and is
    named after its session."""
    if spec.api_source is not None:
        session_id = _text(item, "session_id", where)
        assert session_id is not None
        return "", spec.session_filename(session_id)
    url = _text(item, "url", where)
    assert url is not None
    filename = _text(item, spec.filename_field, where) if spec.filename_field else filename_in(url)
    if not filename:
        raise MalformedPayload(f"{where}url: {shown(url)} names no file (its path ends in '/')")
    return url, filename


def _event_time(event: Mapping[str, Any] | None) -> datetime | None:
    """When a ready event was made (its `created_at`): the time of the URL it carries. An event
    without one counts as the oldest (its URL replaces none stored with a time); no event (a listing
    from Stream's API) is None: newer than any."""
    if event is None:
        return None
    if event.get("created_at") is None:
        return EARLIEST
    return parse_timestamp(event["created_at"], "created_at")
