"""The configuration reference (docs/configuration.md), generated from the settings models.

It walks `Environment` (environment variables) and `ArchiveConfig` with every model nested in it
(TOML tables), field by field through ``model_fields``: nothing here names a setting, so a field
added to `config` appears on the next run. Each row is the field's name, a reader's name for its
type, its default and its ``Field(description=…)`` with its constraints; a field without a
description is an error.

    python -m config.reference > docs/configuration.md
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Iterator, Sequence
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ByteSize, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from config.archive import ArchiveConfig
from config.environment import Environment
from config.types import format_duration

REGENERATE = "python -m config.reference > docs/configuration.md"
_HEADER = f"""# Configuration reference

<!-- Generated from the models in config/ by `{REGENERATE}`; do not edit by hand. -->

The archiver reads its settings from environment variables and from one TOML file, named by
`ARCHIVER_CONFIG` (see [`config/archiver.example.toml`](../config/archiver.example.toml)). Unknown
keys in the file are errors. Any secret may be written `"env:NAME"` (read from that environment
variable) or `"file:/path"` (read from that file). Durations are written `"250ms"`, `"90s"`, `"15m"`,
`"48h"`, `"14d"` or a number of seconds; sizes `"8MiB"`, `"16MB"` or a number of bytes.
"""


def render_reference() -> str:
    """The whole reference, as Markdown."""
    parts = [_HEADER, _environment_section(), "## The TOML file\n"]
    parts += [_table_section(model, path, array) for model, path, array in _tables(ArchiveConfig, "", False)]
    return "\n".join(parts)


def _environment_section() -> str:
    prefix = str(Environment.model_config.get("env_prefix") or "")
    rows = []
    for name, field in Environment.model_fields.items():
        env_name = field.validation_alias if isinstance(field.validation_alias, str) else prefix + name
        rows.append((f"`{env_name.upper()}`", _type_name(field.annotation), _default(field),
                     _describe(Environment, name, field)))
    return _section("## Environment variables", _docstring(Environment), ("variable", "type", "default",
                    "description"), rows)


def _tables(model: type[BaseModel], path: str, array: bool) -> Iterator[tuple[type[BaseModel], str, bool]]:
    """`model` and every model nested in its fields, depth first, with their TOML table paths."""
    yield model, path, array
    for name, field in model.model_fields.items():
        for nested, is_array in _nested_models(field.annotation):
            yield from _tables(nested, f"{path}.{name}" if path else name, is_array)


def _nested_models(annotation: Any, in_array: bool = False) -> Iterator[tuple[type[BaseModel], bool]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, in_array
        return
    origin = get_origin(annotation)
    for arg in get_args(annotation):
        yield from _nested_models(arg, in_array or origin in (tuple, list, set, frozenset))


def _table_section(model: type[BaseModel], path: str, array: bool) -> str:
    title = f"### `[[{path}]]`" if array else f"### `[{path}]`" if path else "### Top level"
    rows = []
    for name, field in model.model_fields.items():
        rows.append((f"`{name}`", _type_name(field.annotation), _default(field), _describe(model, name, field)))
    return _section(title, _docstring(model), ("key", "type", "default", "description"), rows)


def _section(title: str, intro: str, columns: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = [title, ""]
    if intro:
        lines += [intro, ""]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "---|" * len(columns))
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|") or " "


def _docstring(model: type[BaseModel]) -> str:
    doc = model.__doc__
    return inspect.cleandoc(doc) if doc else ""


def _type_name(annotation: Any) -> str:
    """A reader's name for a field's type: `duration`, `size`, `secret`, `"a" | "b"`, `list of string`…"""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " | ".join(f"`{_toml(a)}`" for a in args)
    if origin in (Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(dict.fromkeys(names)) + (" (optional)" if type(None) in args else "")
    if origin in (tuple, list, set, frozenset):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"table of {_type_name(args[1])}" if len(args) == 2 else "table"
    if args and hasattr(annotation, "__metadata__"):  # Annotated[...]
        return _type_name(args[0])
    return _simple_type_name(annotation)


_NAMES: dict[Any, str] = {
    str: "string", int: "integer", float: "number", bool: "boolean", timedelta: "duration", ByteSize: "size",
    SecretStr: "secret", Path: "path", Any: "any",
}


def _simple_type_name(annotation: Any) -> str:
    if annotation in _NAMES:
        return _NAMES[annotation]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " | ".join(f"`{_toml(m.value)}`" for m in annotation)
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    value = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
    if value is PydanticUndefined or value is None:
        return "unset"
    if isinstance(value, BaseModel):
        return "see its table"
    return f"`{_toml(value)}`"


def _toml(value: Any) -> str:
    """`value` as it is written in the TOML file (a duration as "15m", a size as "8MiB")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, ByteSize):
        return f'"{_size(int(value))}"'
    if isinstance(value, timedelta):
        return f'"{format_duration(value)}"'
    if isinstance(value, SecretStr):
        return '"***"'
    if isinstance(value, Enum):
        return _toml(value.value)
    if isinstance(value, str | Path):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple | list | set | frozenset):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return str(value)


def _size(size: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


def _describe(model: type[BaseModel], name: str, field: FieldInfo) -> str:
    """The field's description, with its constraints."""
    if not field.description:
        raise ValueError(f"{model.__name__}.{name} has no Field(description=...) for the reference")
    limits = list(_constraints(field))
    return f"{field.description.removesuffix('.')} ({', '.join(limits)})." if limits else field.description


def _constraints(field: FieldInfo) -> Iterator[str]:
    symbols = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))
    for item in field.metadata:
        for attribute, symbol in symbols:
            if isinstance(item, getattr(annotated_types, attribute.title())):
                yield f"{symbol} {getattr(item, attribute)}"
        if isinstance(item, annotated_types.MinLen) and item.min_length == 1:
            yield "not empty"
        elif isinstance(item, annotated_types.MinLen):
            yield f"at least {item.min_length} long"
        if isinstance(item, annotated_types.MaxLen):
            yield f"at most {item.max_length} long"
        if isinstance(getattr(item, "pattern", None), str):
            yield f"matches `{item.pattern}`"


if __name__ == "__main__":
    sys.stdout.write(render_reference())
