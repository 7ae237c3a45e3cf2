"""ConfigError, and pydantic's validation errors told in plain words: where (a TOML key or an environment
variable), what is wrong, and for an unknown key the known one it was probably meant to be."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from datetime import date, time
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the source, the field and the fault."""


# How a value of each TOML type is named in an error ("got a string").
_TOML_TYPE_NAMES: tuple[tuple[Any, str], ...] = (
    (str, "a string"), (list | tuple, "a list"),
    (dict, "a table"), (date | time, "a date or time"),
)
# What a field of each pydantic error type expects, in a reader's words.
_EXPECTED = {
    "string_type": "a string (text in quotes)", "bool_type": "true or false", "bool_parsing": "true or false",
    "int_type": "a whole number", "int_parsing": "a whole number", "int_from_float": "a whole number",
    "float_type": "a number", "float_parsing": "a number", "list_type": 'a list such as ["a", "b"]',
    "tuple_type": 'a list such as ["a", "b"]', "set_type": 'a list such as ["a", "b"]', "dict_type": "a table",
    "model_type": "a table", "model_attributes_type": "a table", "path_type": "a path (a string)",
    "byte_size": 'a size such as "8MiB", "16MB" or a number of bytes', "byte_size_unit": 'a size such as "8MiB"',
}
# Fields whose expected value is better shown by example (by the field's name, wherever it is).
_EXAMPLES = {
    "download_hosts": 'a list of host patterns such as ["*.example.com"]',
    "kinds": 'a list of kinds such as ["recording", "transcription"]',
    "default_storage": 'a storage name, or a list of names such as ["s3", "local"]',
    "call_types": 'a table of call type = storage name(s), such as { livestream = "s3" }',
    "storages": "[[storages]] tables (each with name, storage_type and bucket)",
    "call_types.*": 'a storage name, or a list of names such as ["s3", "local"]',
}
_UNION_TAG = re.compile(r"^(str|int|float|bool|list|dict|tuple|none)$|\[")  # pydantic's union members in a loc


def _got(value: Any) -> str:
    """A value as an error names it: strings, lists and tables by their type, other values as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    for kind, name in _TOML_TYPE_NAMES:
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _model_at(root: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model whose keys are at `loc` (list indices and table keys are passed over)."""
    model: type[BaseModel] = root
    for part in loc:
        if isinstance(part, str) and part in model.model_fields:
            nested = _nested_model(model.model_fields[part].annotation)
            if nested is None:
                return None
            model = nested
    return model


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if (found := _nested_model(arg)) is not None:
            return found
    return None


def _where(loc: Sequence[int | str], *, env: bool) -> str:
    if env:
        return ".".join(str(p).upper() for p in loc) or "(environment)"
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "(top level)"


_BOUNDS = {"greater_than_equal": "at least", "greater_than": "more than", "less_than_equal": "at most",
           "less_than": "less than"}


def _unknown_key(loc: list[int | str], root: type[BaseModel] | None) -> str:
    """"unknown key 'x'", with "did you mean 'y'?" when a known key is close (else the known keys)."""
    model = _model_at(root, loc[:-1]) if root is not None else None
    known = sorted(model.model_fields) if model is not None else []
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    hint = f": did you mean {close[0]!r}?" if close else f" (known keys: {', '.join(known)})" if known else ""
    return f"unknown key {str(loc[-1])!r}{hint}"


def _expected(loc: list[int | str], root: type[BaseModel] | None, kind: str) -> str:
    """What the value at `loc` should be: by example for the fields that have one, else by type."""
    named = str(loc[-1]) if loc else ""
    if root is not None and len(loc) > 1:
        model = _model_at(root, loc[:-1])
        if model is None or named not in model.model_fields:
            named = f"{loc[-2]}.*"  # a table's own key, such as a call type in call_types
    return _EXAMPLES.get(named, _EXPECTED[kind])


def _plain(item: ErrorDetails, root: type[BaseModel] | None) -> tuple[list[int | str], str, str | None]:
    """One pydantic error as (where, message, expected): `expected` is set for type errors, so the
    errors of one value against several types (a union) can be merged into one line."""
    loc = [p for p in item["loc"] if not (isinstance(p, str) and _UNION_TAG.search(p))]
    kind, value, ctx = item["type"], item.get("input"), item.get("ctx") or {}
    if kind == "extra_forbidden" and loc:
        return loc[:-1], _unknown_key(loc, root), None
    if kind == "missing" and loc:
        return loc[:-1], f"missing required key {str(loc[-1])!r}", None
    if kind in _EXPECTED:
        return loc, "", f"{_expected(loc, root, kind)}, got {_got(value)}"
    if kind in _BOUNDS:
        return loc, f"must be {_BOUNDS[kind]} {next(iter(ctx.values()), '?')}, got {value!r}", None
    plain = {"literal_error": f"expected {ctx.get('expected')}, got {value!r}", "string_too_short": "must not be empty",
             "string_pattern_mismatch": f"{value!r} does not match the pattern {ctx.get('pattern')}"}
    return loc, plain.get(kind) or item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, "), None


def describe(error: ValidationError, source: str, root: type[BaseModel] | None = None) -> str:
    """`error` in plain words, one line per fault: "unknown key 'x': did you mean 'y'?", "expected a
    list of host patterns such as ["*.example.com"], got a string". With `root` (the model that was
    validated), unknown keys get a "did you mean"; without it, locations are environment variables."""
    env = root is None
    lines: dict[str, list[str]] = {}
    expected: dict[str, list[str]] = {}
    for item in error.errors():
        loc, message, wants = _plain(item, root)
        where = _where(loc, env=env)
        if wants is not None:
            expected.setdefault(where, []).append(wants)
        else:
            lines.setdefault(where, []).append(message)
    for where, each in expected.items():  # one value against each member of a union: one line
        got = each[0].rpartition(", got ")[2]
        options = list(dict.fromkeys(w.rpartition(", got ")[0] for w in each))
        lines.setdefault(where, []).append(f"expected {' or '.join(options)}, got {got}")
    body = [f"  {where}: {message}" for where, messages in lines.items() for message in messages]
    return "\n".join([f"{source}: invalid configuration", *body])
