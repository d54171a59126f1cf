"""Bytes of one config file -> one JSON-like document, or an error naming the file. No I/O."""

from __future__ import annotations

import codecs
import json
import math
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from shared.core.errors import ConfigError


@dataclass(frozen=True)
class Limits:
    """What one file may hold (each a setting, README "Input limits")."""

    max_nodes: int = 200_000  # values once every YAML alias is expanded, counted without expanding
    max_depth: int = 64  # mappings and lists inside each other
    max_file_bytes: int = 5 * 1024 * 1024  # a bigger file is never read


# libyaml's parser where PyYAML was built with it: about 4x faster than the pure-Python one on
# a 2,000-task workflow, depth check included; the constructors below are the same Python code
if TYPE_CHECKING:  # CSafeLoader has SafeLoader's methods (CParser stands for its Reader to Composer)
    _SafeLoader = yaml.SafeLoader
else:
    _SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SafeLoader):
    """SafeLoader that rejects duplicate keys instead of silently keeping the last one."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *anchor` merge keys are expanded by construct_mapping itself
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, Hashable):
            continue  # construct_mapping reports "found unhashable key" with its position
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    """An int as SafeLoader reads one; one Python will not convert (over 4,300 digits) is said
    where it is written."""
    try:
        return yaml.SafeLoader.construct_yaml_int(loader, node)
    except ValueError as exc:
        raise yaml.constructor.ConstructorError(None, None, _unreadable_value(exc), node.start_mark) from exc


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
# Keep unquoted dates (2024-01-01) as the text written, as JSON would: a document must stay JSON.
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)  # type: ignore[type-var]  # types-PyYAML: SafeConstructor's own constructors do not fit its add_constructor


# Python writes an int of more than 4,300 digits no more than it reads one (a YAML hex literal is
# read without that limit): over 14,000 bits (about 4,200 digits), a number is refused
MAX_INT_BITS = 14_000
TOO_LONG = "a number of over 4,000 digits cannot be read"


class _DuplicateKey(ValueError):
    pass


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, read as a YAML mapping is: a key written twice is an error, not the last one kept."""
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(f"duplicate key {key!r}")
            seen.add(key)
    return doc


def _unreadable_value(exc: ValueError) -> str:
    """What Python's own conversions say of a value they refuse, in the file's terms."""
    if "integer string conversion" in str(exc):
        return TOO_LONG
    return f"a value cannot be read: {exc}"


def _non_json(
    value: object, path: str = "", _open: frozenset[int] = frozenset(), _done: set[int] | None = None
) -> tuple[str, str] | None:
    """(field, problem) for the first value JSON cannot carry (non-string key, bytes, set, a loop).
    A mapping or list that YAML aliases share is checked once, not once per use."""
    _done = set() if _done is None else _done
    if not isinstance(value, (dict, list)):
        return _scalar_problem(value, path)
    if id(value) in _open:
        return path, "an alias refers to a mapping or list that contains it"
    if id(value) in _done:
        return None
    _open = _open | {id(value)}
    # one frame a level, as before: a deep document meets the recursion limit where it did
    for field, item, key_problem in _members(value, path):
        found = (field, key_problem) if key_problem else _non_json(item, field, _open, _done)
        if found:
            return found
    _done.add(id(value))
    return None


def _members(value: dict[object, object] | list[object], path: str) -> Iterator[tuple[str, object, str | None]]:
    """(field, value, None) for each member in order; (field, None, problem) for a key that is not a string."""
    return _items(value, path) if isinstance(value, list) else _entries(value, path)


def _items(value: list[object], path: str) -> Iterator[tuple[str, object, str | None]]:
    for i, item in enumerate(value):
        yield f"{path}[{i}]", item, None


def _entries(value: dict[object, object], path: str) -> Iterator[tuple[str, object, str | None]]:
    for key, item in value.items():
        if not isinstance(key, str):
            yield path or "(top level)", None, f"key {key!r} is not a string; quote it"
        elif (problem := _text_problem(key, path or "(top level)")) is not None:
            yield problem[0], None, f"key {key!r} {problem[1]}"
        else:
            yield (f"{path}.{key}" if path else key), item, None


def _scalar_problem(value: object, path: str) -> tuple[str, str] | None:
    if isinstance(value, int):  # bool too
        return (path, TOO_LONG) if value.bit_length() > MAX_INT_BITS else None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, "NaN and infinity cannot be represented in JSON")
    if isinstance(value, str):
        return _text_problem(value, path)
    if value is None:
        return None
    return path, f"a {type(value).__name__} value cannot be represented in JSON"


def _text_problem(value: str, path: str) -> tuple[str, str] | None:
    """A string holding a lone surrogate ("\\ud800" in JSON, valid there): no text. AutoGen Studio
    stores it, and then fails (500) every listing of that user's rows."""
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return path, f"holds a lone surrogate ({value[exc.start]!r}), which is no text: Studio could not list it"
    return None


def parse_document(path: str, data: bytes, limits: Limits = Limits()) -> dict[str, Any] | ConfigError:
    try:
        return _parse(path, data, limits)
    except RecursionError:
        return ConfigError(
            path=path, message=f"nested too deeply to parse (limit: {limits.max_depth} levels, MAX_NESTING_DEPTH)"
        )


def _yaml_shape(node: yaml.Node) -> tuple[int, int] | None:
    """(values once expanded, depth) of a YAML node graph, counted without expanding its aliases
    (a shared node is counted once per use, computed once); None for a graph with a loop, which
    the JSON check reports with its field."""
    sizes: dict[int, tuple[int, int]] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    while stack:
        current, children_done = stack.pop()
        key = id(current)
        if key in sizes:
            continue
        children = _yaml_children(current)
        if children_done:
            open_nodes.discard(key)
            sizes[key] = _shape_of(children, sizes)
            continue
        if key in open_nodes:
            return None
        open_nodes.add(key)
        if any(id(child) in open_nodes for child in children):
            return None
        stack.append((current, True))
        stack += [(child, False) for child in children if id(child) not in sizes]
    return sizes[id(node)]


def _yaml_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _shape_of(children: list[yaml.Node], sizes: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """(values, depth) of a node from its children's, every one of them already counted."""
    count = 1 + sum(sizes[id(c)][0] for c in children)
    return count, (1 + max(sizes[id(c)][1] for c in children)) if children else 0


def _json_depth(value: object) -> int:
    depth, level = 0, [value]
    while level:
        level = [v for item in level for v in _json_children(item)]
        depth += 1
    return depth - 1


def _json_children(value: object) -> Iterable[object]:
    if isinstance(value, dict):
        return value.values()
    return value if isinstance(value, list) else ()


def _nested_beyond(text: str, limit: int) -> bool:
    """Whether a collection opens more than `limit` levels deep. libyaml builds nodes by recursing
    in C, past Python's recursion guard: a document nested 100,000 deep would crash the process.
    Its event stream is flat, so the depth is read from it first, stopping at the limit."""
    events = _SafeLoader(text)
    depth = 0
    try:
        while (event := events.get_event()) is not None:  # type: ignore[no-untyped-call]  # types-PyYAML leaves Parser unannotated
            if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                depth += 1
                if depth > limit:
                    return True
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                depth -= 1
    finally:
        events.dispose()
    return False


def _load_yaml(path: str, text: str, limits: Limits) -> list[Any] | ConfigError:
    """Every document of `text`, refused before it is built when its aliases expand too far."""
    too_deep = _nesting_error(path, text, limits)
    if too_deep is not None:
        return too_deep
    loader = _UniqueKeyLoader(text)
    try:
        nodes = _yaml_nodes(loader)
        for node in nodes:
            refused = _shape_error(path, _yaml_shape(node), limits)
            if refused is not None:
                return refused
        return [loader.construct_document(node) for node in nodes]
    finally:
        loader.dispose()


def _nesting_error(path: str, text: str, limits: Limits) -> ConfigError | None:
    """The error for a document nested past the limit, told from libyaml's events before any node
    is built; None for one within it (or without libyaml, where the shape check tells it)."""
    too_deep = ConfigError(
        path=path, message=f"nested over {limits.max_depth} levels deep, the limit (MAX_NESTING_DEPTH)"
    )
    try:
        if _SafeLoader is not yaml.SafeLoader and _nested_beyond(text, limits.max_depth):
            return too_deep
    except yaml.YAMLError as exc:
        # libyaml's own limit (PyYAML 6.0.4 and later): its scanner reads a run of `[` ahead of
        # the events that would have told the depth, and stops at its maximum first
        if "nesting depth" in str(exc):
            return too_deep
        raise
    return None


def _yaml_nodes(loader: _UniqueKeyLoader) -> list[yaml.Node]:
    nodes = []
    while loader.check_node():
        node = loader.get_node()
        if node is not None:
            nodes.append(node)
    return nodes


def _shape_error(path: str, shape: tuple[int, int] | None, limits: Limits) -> ConfigError | None:
    """The error for a document whose aliases expand past the limits; None for one within them
    (or with a loop: the JSON check names its field)."""
    if shape is None:
        return None
    if shape[0] > limits.max_nodes:
        return ConfigError(
            path=path,
            message=f"expands to {shape[0]:,} values once its aliases are expanded, over "
            f"the limit of {limits.max_nodes:,} (MAX_EXPANDED_VALUES)",
        )
    if shape[1] > limits.max_depth:
        return ConfigError(
            path=path,
            message=f"nested {shape[1]} levels deep, over the limit of {limits.max_depth} (MAX_NESTING_DEPTH)",
        )
    return None


def _parse(path: str, data: bytes, limits: Limits) -> dict[str, Any] | ConfigError:
    text = _decode(path, data)
    if isinstance(text, ConfigError):
        return text
    if not text.strip():
        return ConfigError(path=path, message="empty file: expected one component")
    doc = _parse_json(path, text, limits) if path.lower().endswith(".json") else _parse_yaml(path, text, limits)
    if isinstance(doc, ConfigError):
        return doc
    if not isinstance(doc, dict):
        return ConfigError(path=path, message=f"expected a mapping at the top level, found {type(doc).__name__}")
    bad = _non_json(doc)
    if bad:
        return ConfigError(path=path, field=bad[0], message=bad[1])
    return doc


def _decode(path: str, data: bytes) -> str | ConfigError:
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0  # as some editors write
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = bom + exc.start
        return ConfigError(path=path, message=f"not valid UTF-8 (byte 0x{data[at]:02x} at offset {at})")


def _parse_json(path: str, text: str, limits: Limits) -> object:
    """The JSON document, or a ConfigError."""
    try:
        doc = json.loads(text, object_pairs_hook=_json_object)
    except json.JSONDecodeError as exc:
        return ConfigError(path=path, message=f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")
    except _DuplicateKey as exc:
        return ConfigError(path=path, message=str(exc))
    except ValueError as exc:
        return ConfigError(path=path, message=_unreadable_value(exc))
    if (depth := _json_depth(doc)) > limits.max_depth:
        return ConfigError(
            path=path,
            message=f"nested {depth} levels deep, over the limit of {limits.max_depth} (MAX_NESTING_DEPTH)",
        )
    return doc


def _parse_yaml(path: str, text: str, limits: Limits) -> object:
    """The one YAML document, or a ConfigError."""
    try:
        loaded = _load_yaml(path, text, limits)
    except yaml.YAMLError as exc:
        return ConfigError(path=path, message=f"malformed YAML{_yaml_problem(exc)}")
    except ValueError as exc:  # a constructor's conversion: `!!int abc`, a 5,000-digit number
        return ConfigError(path=path, message=_unreadable_value(exc))
    if isinstance(loaded, ConfigError):
        return loaded
    docs = [d for d in loaded if d is not None]
    if len(docs) != 1:
        return ConfigError(path=path, message=f"expected exactly one component per file, found {len(docs)} documents")
    return docs[0]


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """`` at line L, column C: problem``, as PyYAML tells it."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{where}: {problem}"
