"""The values the stand-in model answers with: a text in the format a request asks for (an
instance of its JSON schema, for structured output) and a tool call with made-up arguments."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from typing import Any


def formatted(text: str, response_format: object) -> str:
    """The answer in the format the request asks for."""
    if not isinstance(response_format, dict):
        return text
    kind = response_format.get("type")
    if kind == "json_schema":
        schema = _schema_of(response_format)
        return json.dumps(_instance(schema, schema, text))
    if kind == "json_object":
        return json.dumps({"answer": text})
    return text


def _schema_of(response_format: dict[str, Any]) -> dict[str, Any]:
    return (response_format.get("json_schema") or {}).get("schema") or {}


def _instance(schema: object, root: dict[str, Any], text: str, depth: int = 0) -> object:
    """A value of a JSON schema (what pydantic writes: $defs and $ref, anyOf, enums, bounds), as a
    model in structured output gives one; `text` for strings."""
    if not isinstance(schema, dict) or depth > 16:
        return None
    if "$ref" in schema:  # "#/$defs/Name"
        return _instance(_referenced(root, schema["$ref"]), root, text, depth + 1)
    fixed = _fixed(schema)
    if fixed:
        return fixed[0]
    alternative = _alternative(schema, depth)
    if alternative:
        return _instance(alternative[0], root, text, depth + 1)
    return _typed(schema, root, text, depth)


def _referenced(root: dict[str, Any], ref: object) -> object:
    target: object = root
    for part in str(ref).removeprefix("#/").split("/"):
        target = target.get(part) if isinstance(target, dict) else None
    return target


def _fixed(schema: dict[str, Any]) -> tuple[object] | None:
    """(the value) a schema fixes by const, enum or default; None when it fixes none."""
    if "const" in schema:
        return (schema["const"],)
    if schema.get("enum"):
        return (schema["enum"][0],)
    if "default" in schema:
        return (schema["default"],)
    return None


def _alternative(schema: dict[str, Any], depth: int) -> tuple[object] | None:
    """(the first option that is not null) of anyOf, oneOf or allOf; (None,) for a nullable one
    deep in a schema that may nest itself; None when the schema offers none."""
    for key in ("anyOf", "oneOf", "allOf"):
        listed = schema.get(key) or []
        options = _not_null(listed)
        if len(options) < len(listed) and depth >= 4:
            return (None,)
        if options:
            return (options[0],)
    return None


def _not_null(options: list[object]) -> list[dict[str, Any]]:
    return [o for o in options if isinstance(o, dict) and o.get("type") != "null"]


def _typed(schema: dict[str, Any], root: dict[str, Any], text: str, depth: int) -> object:
    """A value of the schema's type: an object of its properties, an array, or a scalar."""
    kind = _type_of(schema)
    if kind == "object" or "properties" in schema:
        return _object(schema, root, text, depth)
    if kind == "array":
        return _array(schema, root, text, depth)
    return _scalar(kind, schema, text)


def _object(schema: dict[str, Any], root: dict[str, Any], text: str, depth: int) -> dict[str, Any]:
    properties = schema.get("properties") or {}
    return {name: _instance(sub, root, text, depth + 1) for name, sub in properties.items()}


def _array(schema: dict[str, Any], root: dict[str, Any], text: str, depth: int) -> list[object]:
    """minItems values of the items' schema, at least one."""
    return [_instance(schema.get("items"), root, text, depth + 1) for _ in range(max(1, schema.get("minItems", 1)))]


def _type_of(schema: dict[str, Any]) -> object:
    """The schema's type; of a list of types, the first that is not null."""
    kind = schema.get("type")
    if isinstance(kind, list):
        return next((k for k in kind if k != "null"), None)
    return kind


def _scalar(kind: object, schema: dict[str, Any], text: str) -> object:
    """A value of a scalar type; None for null or a type unknown."""
    makers = {"integer": _number, "number": _number, "boolean": _true, "string": _string}
    if not isinstance(kind, str):
        return None
    make = makers.get(kind)
    return make(kind, schema, text) if make else None


def _number(kind: str, schema: dict[str, Any], _text: str) -> int | float:
    value = _within(
        schema.get("minimum", schema.get("exclusiveMinimum")), schema.get("maximum", schema.get("exclusiveMaximum"))
    )
    return math.floor(value) if kind == "integer" else float(value)


def _true(_kind: str, _schema: dict[str, Any], _text: str) -> bool:
    return True


def _string(_kind: str, schema: dict[str, Any], text: str) -> str:
    """The text, cut to maxLength and padded with dots to minLength."""
    return text[: schema.get("maxLength", len(text))].ljust(schema.get("minLength", 0), ".")


def _within(low: float | None, high: float | None) -> float:
    """A number within the bounds given: their middle, next to the one given, or 2."""
    if low is None:
        return 2 if high is None else high - 1
    return low + 1 if high is None else (low + high) / 2


def tool_call(tools: list[dict[str, Any]], control: dict[str, Any], digest: str) -> dict[str, Any]:
    """A call of the tool control `tool` names (else the first offered), with control `tool_args`
    (else arguments made up from the tool's parameters)."""
    function = _function(tools, control.get("tool"))
    args = control.get("tool_args")
    if args is None:
        args = _default_args(_parameters(function))
    return {
        "id": f"call_{digest}",
        "type": "function",
        "function": {"name": function.get("name"), "arguments": json.dumps(args)},
    }


def _function(tools: list[dict[str, Any]], wanted: object) -> dict[str, Any]:
    """The function of the tool named `wanted`, else of the first tool."""
    functions = _functions(tools)
    return next((f for f in functions if f.get("name") == wanted), functions[0])


def _functions(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t.get("function") or {} for t in tools]


def _parameters(function: dict[str, Any]) -> dict[str, Any]:
    """The function's parameters: their schemas by name."""
    return (function.get("parameters") or {}).get("properties") or {}


def _default_args(properties: dict[str, Any]) -> dict[str, Any]:
    """2, 3, 4 ... for each integer or number parameter in turn, True for booleans, "x" else."""
    args: dict[str, Any] = {}
    numbers = itertools.count(2)
    for name, schema in properties.items():
        kind = schema.get("type") if isinstance(schema, dict) else None
        args[name] = _default_arg(kind, numbers)
    return args


def _default_arg(kind: object, numbers: Iterator[int]) -> int | bool | str:
    if kind in ("integer", "number"):
        return next(numbers)
    return True if kind == "boolean" else "x"
