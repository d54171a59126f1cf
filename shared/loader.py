"""Bytes of one config file -> one JSON-like document, or an error naming the file. No I/O."""

from __future__ import annotations

import json
from typing import Any

import yaml

from shared.errors import ConfigError

SUFFIXES = (".yaml", ".yml", ".json")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of silently keeping the last one."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_document(path: str, data: bytes) -> dict[str, Any] | ConfigError:
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
    return doc
