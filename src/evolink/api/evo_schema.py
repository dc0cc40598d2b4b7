"""A small JSON-schema checker that words its errors as Evolution's validator does (``jsonschema``
1.5 for Node, as Evolution 2.3.7 pins it): ``instance requires property "number"``,
``text is not of a type(s) string``, a sub-schema's ``description`` replacing the text.

Why hand-written: the Python ``jsonschema`` package words errors differently (``'number' is a
required property``), and Evolution clients match on these strings. The same schema dicts are
published as the routes' OpenAPI request bodies, so the documentation and the checks cannot drift.
Supported keywords: type, required, properties, items, minItems, maxItems, uniqueItems, minLength,
maxLength, pattern, enum, minimum, maximum, description.
"""

from __future__ import annotations

import json
import re
from typing import Any

_TYPES: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


def _name(path: str) -> str:
    return path or "instance"


def _type_ok(value: Any, t: str | list[str]) -> bool:
    types = [t] if isinstance(t, str) else t
    return any(_TYPES[x](value) for x in types)


def check(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Every error, in Evolution's wording (the leading ``instance.`` removed, as Evolution does)."""
    errors = _check(schema, value, path)
    if errors and "description" in schema and path:
        return [schema["description"]]
    return errors


def _check(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    out: list[str] = []
    name = _name(path)
    t = schema.get("type")
    if t is not None and not _type_ok(value, t):
        shown = t if isinstance(t, str) else ",".join(t)
        return [f"{name} is not of a type(s) {shown}"]
    if "enum" in schema and value not in schema["enum"]:
        shown = ",".join(json.dumps(e) if not isinstance(e, bool) else str(e).lower() for e in schema["enum"])
        out.append(f"{name} is not one of enum values: {shown}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            out.append(f"{name} does not meet minimum length of {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            out.append(f"{name} does not meet maximum length of {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f'{name} does not match pattern {json.dumps(schema["pattern"])}')
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{name} must be greater than or equal to {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{name} must be less than or equal to {schema['maximum']}")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            out.append(f"{name} does not meet minimum length of {schema['minItems']}")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.append(f"{name} does not meet maximum length of {schema['maxItems']}")
        if schema.get("uniqueItems"):
            seen = [json.dumps(v, sort_keys=True) for v in value]
            if len(set(seen)) != len(seen):
                out.append(f"{name} contains duplicate item")
        if "items" in schema:
            for i, item in enumerate(value):
                out += check(schema["items"], item, f"{path}[{i}]" if path else f"[{i}]")
    if isinstance(value, dict):
        for req in schema.get("required", []):
            if req not in value:
                out.append(f'{name} requires property "{req}"')
        for prop, sub in schema.get("properties", {}).items():
            if prop in value:
                out += check(sub, value[prop], f"{path}.{prop}" if path else prop)
    return out
