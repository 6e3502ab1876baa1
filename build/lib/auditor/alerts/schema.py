"""Checks a document against alert.schema.json without a JSON Schema library.

The project does not depend on `jsonschema`; this covers exactly the keywords the schema file
uses (type, const, enum, required, properties, additionalProperties, items, minLength,
pattern, format date-time) and rejects a schema that uses any other, so the file and the
check cannot drift apart silently.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

_ANNOTATIONS = {"$schema", "$id", "title", "description"}
_KEYWORDS = {
    "type",
    "const",
    "enum",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "minLength",
    "pattern",
    "format",
}
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "null": (type(None),),
    "integer": (int,),
}


@cache
def alert_schema() -> dict[str, Any]:
    text = resources.files("auditor.alerts").joinpath("alert.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate(document: Any, schema: dict[str, Any] | None = None) -> list[str]:
    """Every violation as `path: problem`; empty when the document conforms."""
    problems: list[str] = []
    _check(document, schema if schema is not None else alert_schema(), "$", problems)
    return problems


def _type_ok(value: Any, name: str) -> bool:
    if name in ("integer",) and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[name])


def _check(value: Any, schema: dict[str, Any], path: str, problems: list[str]) -> None:
    unknown = set(schema) - _KEYWORDS - _ANNOTATIONS
    if unknown:
        raise ValueError(f"schema at {path} uses unsupported keywords {sorted(unknown)}")
    if not _type_matches(value, schema, path, problems):
        return
    if "const" in schema and value != schema["const"]:
        problems.append(f"{path}: must be {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        _check_string(value, schema, path, problems)
    elif isinstance(value, dict):
        _check_object(value, schema, path, problems)
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            _check(item, schema["items"], f"{path}[{index}]", problems)


def _type_matches(value: Any, schema: dict[str, Any], path: str, problems: list[str]) -> bool:
    if "type" not in schema:
        return True
    names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if any(_type_ok(value, n) for n in names):
        return True
    problems.append(f"{path}: expected {' or '.join(names)}, got {type(value).__name__}")
    return False


def _check_string(value: str, schema: dict[str, Any], path: str, problems: list[str]) -> None:
    if len(value) < schema.get("minLength", 0):
        problems.append(f"{path}: shorter than {schema['minLength']}")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        problems.append(f"{path}: does not match {schema['pattern']}")
    if schema.get("format") != "date-time":
        return
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        problems.append(f"{path}: not a date-time")
        return
    if parsed.tzinfo is None:
        problems.append(f"{path}: date-time without a time zone")


def _check_object(
    value: dict[str, Any], schema: dict[str, Any], path: str, problems: list[str]
) -> None:
    for key in schema.get("required", ()):
        if key not in value:
            problems.append(f"{path}: missing {key!r}")
    properties = schema.get("properties", {})
    for key, item in value.items():
        if key in properties:
            _check(item, properties[key], f"{path}.{key}", problems)
        elif schema.get("additionalProperties", True) is False:
            problems.append(f"{path}: unexpected key {key!r}")
