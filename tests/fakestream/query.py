"""The QueryCalls engine of the fake API: filters, sort and opaque cursors (stream-api.md §4.2)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.fakestream.models import EPOCH, CallRecord, parse_timestamp

DEFAULT_LIMIT = 25
MAX_LIMIT = 100

# Filterable fields (spec x-stream-filter-fields) → value kind.
_FIELDS: dict[str, str] = {
    "id": "string",
    "cid": "string",
    "type": "string",
    "team": "string",
    "created_by_user_id": "string",
    "created_at": "date",
    "updated_at": "date",
    "ended_at": "date",
    "starts_at": "date",
    "ongoing": "bool",
    "backstage": "bool",
}
_OPS: dict[str, set[str]] = {
    "string": {"$eq", "$exists", "$gt", "$gte", "$in", "$lt", "$lte"},
    "date": {"$eq", "$exists", "$gt", "$gte", "$in", "$lt", "$lte"},
    "bool": {"$eq"},
}
_SORT_FIELDS = {"starts_at", "created_at", "updated_at", "ended_at", "type", "id", "cid"}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "$eq": lambda a, b: a == b,
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}


_PROBE = CallRecord("probe", "probe", created_at=EPOCH, updated_at=EPOCH, ended_at=None, session_id="")


class QueryError(ValueError):
    """A QueryCalls request the real API would reject with 400 (code 4)."""


# --------------------------------------------------------------------------- filters


def _value(call: CallRecord, name: str) -> Any:
    """The value of a filterable/sortable field of ``call`` (None when unset)."""
    return {
        "id": call.call_id,
        "cid": call.cid,
        "type": call.call_type,
        "team": None,
        "created_by_user_id": call.created_by_id,
        "created_at": call.created_at,
        "updated_at": call.updated_at,
        "ended_at": call.ended_at,
        "starts_at": None,
        "ongoing": call.ended_at is None,
        "backstage": False,
    }[name]


def _coerce(kind: str, name: str, operand: Any) -> Any:
    """Convert a filter operand to the field's value type, or raise QueryError."""
    if kind == "date":
        try:
            return parse_timestamp(operand)
        except ValueError as err:
            raise QueryError(f'field "{name}": {err}') from err
    expected = bool if kind == "bool" else str
    if not isinstance(operand, expected):
        raise QueryError(f'field "{name}" expects a {kind} value, got {operand!r}')
    return operand


def _field_matches(call: CallRecord, name: str, condition: Any) -> bool:
    """Evaluate ``{"$op": operand, ...}`` (or a plain value meaning ``$eq``) on one field."""
    kind = _FIELDS[name]
    ops = condition if isinstance(condition, dict) else {"$eq": condition}
    value = _value(call, name)
    results = []  # every operator is evaluated so that invalid ones always raise
    for op, operand in ops.items():
        if op not in _OPS[kind]:
            raise QueryError(f'operator "{op}" is not allowed for field "{name}"')
        if op == "$exists":
            ok = (value is not None) == bool(operand)
        elif op == "$in":
            if not isinstance(operand, list):
                raise QueryError(f'"$in" on field "{name}" needs a list')
            ok = value in [_coerce(kind, name, item) for item in operand]
        else:
            operand = _coerce(kind, name, operand)
            ok = value is not None and _COMPARE[op](value, operand)
        results.append(ok)
    return all(results)


def matches(call: CallRecord, conditions: dict[str, Any]) -> bool:
    """True when ``call`` satisfies a MongoDB-style filter (fields, ``$and``, ``$or``, ``custom.x``).

    Every clause is evaluated (no short-circuit) so an invalid clause raises QueryError for any call.
    """
    results = []
    for key, condition in conditions.items():
        if key in ("$and", "$or"):
            if not isinstance(condition, list) or not all(isinstance(c, dict) for c in condition):
                raise QueryError(f'"{key}" needs a list of filter objects')
            clauses = [matches(call, c) for c in condition]
            ok = all(clauses) if key == "$and" else any(clauses)
        elif key in _FIELDS:
            ok = _field_matches(call, key, condition)
        elif key.startswith("custom."):
            expected = condition.get("$eq") if isinstance(condition, dict) else condition
            ok = call.custom.get(key.removeprefix("custom.")) == expected
        else:
            raise QueryError(f'field "{key}" is not a valid filter field')
        results.append(ok)
    return all(results)


# --------------------------------------------------------------------------- sort and paging


def _sorted(calls: list[CallRecord], sort: list[dict[str, Any]]) -> list[CallRecord]:
    """Sort by each ``{field, direction}`` (first is primary); unset values go last; ties by cid."""
    result = sorted(calls, key=lambda c: c.cid)
    for spec in reversed(sort):
        name, direction = spec["field"], spec.get("direction", 1)
        present = [c for c in result if _value(c, name) is not None]
        missing = [c for c in result if _value(c, name) is None]
        present.sort(key=lambda c: _value(c, name), reverse=direction == -1)
        result = present + missing
    return result


def _validate_sort(sort: Any) -> list[dict[str, Any]]:
    """Check the sort list (≤ 2 items, known fields, direction ±1); default created_at desc."""
    if sort is None or sort == []:
        return [{"field": "created_at", "direction": -1}]
    if not isinstance(sort, list) or len(sort) > 2 or not all(isinstance(s, dict) for s in sort):
        raise QueryError("sort must be a list of at most 2 {field, direction} objects")
    for spec in sort:
        if spec.get("field") not in _SORT_FIELDS:
            raise QueryError(f'sort field "{spec.get("field")}" is not allowed')
        if spec.get("direction", 1) not in (1, -1):
            raise QueryError("sort direction must be 1 or -1")
    if len(sort) == 2 and [s["field"] for s in sort] != ["starts_at", "created_at"]:
        raise QueryError("this sort combination is not allowed")
    return sort


def encode_cursor(offset: int) -> str:
    """Opaque cursor: unpadded base64url of ``{"offset": N}`` (like the sample's ``eyJvZmZzZXQiOjEwMH0``)."""
    raw = json.dumps({"offset": offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Offset inside a cursor made by :func:`encode_cursor`; QueryError when it is not one."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        offset = data["offset"]
    except (ValueError, KeyError, TypeError, binascii.Error) as err:
        raise QueryError("invalid pagination cursor") from err
    if not isinstance(offset, int) or offset < 0:
        raise QueryError("invalid pagination cursor")
    return offset


@dataclass(frozen=True)
class QueryPage:
    """One QueryCalls page."""

    calls: list[CallRecord]
    next: str | None
    prev: str | None


def _limit(body: dict[str, Any]) -> int:
    """The page size: 1..100, default 25; QueryError outside 0..100."""
    limit = body.get("limit")
    if limit is None or limit == 0:
        return DEFAULT_LIMIT
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit must be between 0 and {MAX_LIMIT}")
    return limit


def query_calls(calls: list[CallRecord], body: dict[str, Any]) -> QueryPage:
    """Run a QueryCallsRequest body over ``calls`` and return the requested page."""
    filters = body.get("filter_conditions") or {}
    if not isinstance(filters, dict):
        raise QueryError("filter_conditions must be an object")
    limit, sort = _limit(body), _validate_sort(body.get("sort"))
    if body.get("next") and body.get("prev"):
        raise QueryError("next and prev cannot be used together")
    offset = 0
    if body.get("next"):
        offset = decode_cursor(str(body["next"]))
    elif body.get("prev"):
        offset = max(0, decode_cursor(str(body["prev"])))
    matches(_PROBE, filters)  # validates the filter even when there are no calls
    selected = _sorted([c for c in calls if matches(c, filters)], sort)
    page = selected[offset : offset + limit]
    next_cursor = encode_cursor(offset + limit) if offset + limit < len(selected) else None
    prev_cursor = encode_cursor(max(0, offset - limit)) if offset > 0 else None
    return QueryPage(page, next_cursor, prev_cursor)
