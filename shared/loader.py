"""Bytes of one config file -> one JSON-like document, or an error naming the file. No I/O."""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any

import yaml

from shared.errors import ConfigError

SUFFIXES = (".yaml", ".yml", ".json")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of silently keeping the last one."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *anchor` merge keys are expanded by construct_mapping itself
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, Hashable):
            continue  # construct_mapping reports "found unhashable key" with its position
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# Keep unquoted dates (2024-01-01) as the text written, as JSON would: a document must stay JSON.
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)


def _non_json(value: Any, path: str = "", _open: frozenset[int] = frozenset()) -> tuple[str, str] | None:
    """(field, problem) for the first value JSON cannot carry (non-string key, bytes, set, a loop)."""
    if isinstance(value, (dict, list)):
        if id(value) in _open:
            return path, "an alias refers to a mapping or list that contains it"
        _open = _open | {id(value)}
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return path or "(top level)", f"key {key!r} is not a string; quote it"
            found = _non_json(item, f"{path}.{key}" if path else key, _open)
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _non_json(item, f"{path}[{i}]", _open)
            if found:
                return found
    elif value is not None and not isinstance(value, (str, bool, int, float)):
        return path, f"a {type(value).__name__} value cannot be represented in JSON"
    return None


def parse_document(path: str, data: bytes) -> dict[str, Any] | ConfigError:
    try:
        return _parse(path, data)
    except RecursionError:
        return ConfigError(path=path, message="nested too deeply to parse")


def _parse(path: str, data: bytes) -> dict[str, Any] | ConfigError:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return ConfigError(path=path, message=f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})")
    if not text.strip():
        return ConfigError(path=path, message="empty file: expected one component")
    if path.endswith(".json"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            return ConfigError(path=path, message=f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")
    else:
        try:
            docs = list(yaml.load_all(text, Loader=_UniqueKeyLoader))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            return ConfigError(path=path, message=f"malformed YAML{where}: {problem}")
        docs = [d for d in docs if d is not None]
        if len(docs) != 1:
            return ConfigError(path=path, message=f"expected exactly one component per file, found {len(docs)} documents")
        doc = docs[0]
    if not isinstance(doc, dict):
        return ConfigError(path=path, message=f"expected a mapping at the top level, found {type(doc).__name__}")
    bad = _non_json(doc)
    if bad:
        return ConfigError(path=path, field=bad[0], message=bad[1])
    return doc
