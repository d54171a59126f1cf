"""A config tree: parsed files -> validated nodes, references, keys and errors. Pure, no I/O."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from shared.core.components import a_kind, either, held_types, members_field
from shared.core.errors import ConfigError
from shared.core.facts import WORKFLOW, FileFacts, file_facts
from shared.core.graph import find_cycles, waves
from shared.core.hashing import node_key
from shared.core.refs import NESTED, file_at, inline_refs, is_valid_variable_name

# a component held by a config field: its owner's path, and the field (`config.participants[2]`)
_OWNER = re.compile(r"(.*?)\.?(config\.\w+(?:\[\d+\])?)\Z")


class Mistyped(NamedTuple):
    at: str  # where the component sits in the resolved spec
    holds: tuple[str, ...]  # the types the field holding it holds
    said: str  # file, field and both types


def _held_parts(node: object, path: str) -> Iterator[tuple[str, tuple[str, ...], dict[str, Any]]]:
    """(path, the types its field holds, the component) of each component held by a config field
    the table knows (components.py), at any depth."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from _held_parts(item, f"{path}[{i}]")
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        yield from _held_parts(value, f"{path}.{key}" if path else str(key))
    config, owner = node.get("config"), node.get("component_type")
    if not isinstance(config, dict):
        return
    for name, value in config.items():
        held = held_types(owner, name)
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if held and isinstance(item, dict) and "provider" in item:
                index = f"[{i}]" if isinstance(value, list) else ""
                yield f"{path + '.' if path else ''}config.{name}{index}", held, item


@dataclass
class Node:
    label: str
    path: str
    component_type: str
    documents: Mapping[str, Any] = field(repr=False, compare=False)
    deps: list[str] = field(default_factory=list)
    refs: list[tuple[str, str]] = field(default_factory=list)  # (field path, label)
    content_hash: str = ""
    key: str = ""
    size: int = 0  # bytes as written; resolved_size once references are inlined
    resolved_size: int = 0

    @property
    def spec(self) -> dict[str, Any]:
        """The component as written (read lazily: a no-change sync never needs it)."""
        return self.documents[self.path]  # type: ignore[no-any-return]


@dataclass
class Tree:
    nodes: dict[str, Node] = field(default_factory=dict)
    errors: list[ConfigError] = field(default_factory=list)
    # label -> why it cannot be synced: its own errors (invalid) or a dependency's (skipped)
    invalid: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    # files that could not become a node at all: no usable label, or one an earlier file holds too
    # (that file's node is invalid): path -> why
    broken_files: dict[str, str] = field(default_factory=dict)
    workflow_files: list[str] = field(default_factory=list)

    @property
    def valid(self) -> list[str]:
        return sorted(lbl for lbl in self.nodes if lbl not in self.invalid and lbl not in self.skipped)

    def why_invalid(self, label: str) -> str | None:
        """The error of the invalid node at the root of `label`'s skip (a missing variable, say),
        followed through the dependencies that were skipped for it."""
        seen: set[str] = set()
        while label not in self.invalid and label not in seen:
            seen.add(label)
            bad = next((d for d in self.nodes[label].deps if d in self.invalid or d in self.skipped), None)
            if bad is None:
                return None
            label = bad
        return self.invalid.get(label)

    def resolved(self, label: str, _memo: dict[str, Any] | None = None) -> dict[str, Any]:
        """The node's spec with every reference inlined, recursively (valid nodes only)."""
        memo = {} if _memo is None else _memo
        if label not in memo:
            memo[label] = inline_refs(self.nodes[label].spec, lambda dep: self.resolved(dep, memo))
        return memo[label]  # type: ignore[no-any-return]

    def mistyped(self, label: str) -> list[Mistyped]:
        """Each component in the node's resolved spec whose `component_type` is not what the field
        holding it holds (a model_client naming a tool), said with the file and field that hold it:
        what may explain AutoGen's "Expected type does not match", which names neither. AutoGen
        judges by class, not by `component_type`: the worker keeps those its loading confirms."""
        files, said = self.files_within(label), []
        for at, held, part in _held_parts(self.resolved(label), ""):
            kind = part.get("component_type")
            if not isinstance(kind, str) or kind in held:
                continue
            owner, held_by = _OWNER.match(at).groups()  # type: ignore[union-attr]  # `at` ends in a config field
            path, inside = file_at(files, owner)
            where = f"{inside}.{held_by}" if inside else held_by
            what = f"refers to {part.get('label')!r} ({files[at]})" if at in files else "holds one written inline"
            kinds = either(tuple(a_kind(h) for h in held))
            said.append(Mistyped(at, held, f"{path}: {where} {what}, {a_kind(kind)}; it holds {kinds}"))
        return said

    def files_within(self, label: str, at: str = "") -> dict[str, str]:
        """Where each file's component sits in the node's resolved spec: {field path: file}, the
        node's own file at "" (a worker's error about a component inlined there names its file)."""
        node = self.nodes[label]
        files = {at: node.path}
        for where, dep in node.refs:
            files |= self.files_within(dep, f"{at}.{where}" if at else where)
        return files


@dataclass(frozen=True)
class TreeLimits:
    """One file must not make a request that starves the rest: over a limit, it is an error."""

    max_refs: int = 200  # `$ref`s in one component
    max_participants: int = 100  # a team's participants
    max_request_bytes: int = 1024 * 1024  # the component with every reference inlined, as sent to Studio


def build_tree(
    documents: Mapping[str, dict[str, Any] | ConfigError],
    env: Mapping[str, str],
    facts: Mapping[str, FileFacts] | None = None,
    limits: TreeLimits | None = None,
) -> Tree:
    """`env`: the environment the tree's `${VAR}`s are checked against (and the values of those
    that are no secret keyed); `facts` may carry precomputed FileFacts by path (from the scan cache)."""
    limits = limits or TreeLimits()
    tree = Tree()
    problems: dict[str, list[ConfigError]] = {}
    by_label: dict[str, list[Node]] = {}
    known = facts or {}
    for path in sorted(documents):
        ff = _facts_of(tree, path, documents, known)
        if ff is None:
            continue
        node = _node(path, ff, documents, env)
        by_label.setdefault(node.label, []).append(node)
        errs = own_problems(path, ff, env, limits)
        if errs:
            problems[path] = errs
    _link(tree, by_label, problems)
    _mark_invalid(tree, by_label, problems)
    _key(tree, limits)
    return tree


def _node(
    path: str, ff: FileFacts, documents: Mapping[str, dict[str, Any] | ConfigError], env: Mapping[str, str]
) -> Node:
    return Node(
        size=ff.size,
        label=str(ff.label),
        path=path,
        component_type=ff.component_type,
        documents=documents,
        deps=sorted({target for _, target in ff.refs}),
        refs=ff.refs,
        content_hash=ff.keyed_hash(env),
    )


def _mark_invalid(tree: Tree, by_label: dict[str, list[Node]], problems: dict[str, list[ConfigError]]) -> None:
    """The problems become the tree's errors, file by file; a node with problems of its own, or
    whose label another file uses too, is invalid."""
    for path in sorted(problems):
        tree.errors.extend(problems[path])
    for label, node in tree.nodes.items():
        found = problems.get(node.path)
        if found:
            tree.invalid[label] = "; ".join(str(e) for e in found)
        elif len(by_label[label]) > 1:
            tree.invalid[label] = "duplicate label"


def _facts_of(
    tree: Tree, path: str, documents: Mapping[str, dict[str, Any] | ConfigError], known: Mapping[str, FileFacts]
) -> FileFacts | None:
    """The file's facts when it can be a node; otherwise recorded in `tree` as what it is."""
    ff = known.get(path)
    if ff is None:
        doc = documents[path]
        if isinstance(doc, ConfigError):
            tree.errors.append(doc)
            tree.broken_files[path] = f"{doc.field}: {doc.message}" if doc.field else doc.message
            return None
        ff = file_facts(path, doc)
    if ff.component_type == WORKFLOW:
        tree.workflow_files.append(path)
        return None
    if ff.label is None:
        tree.errors.extend(ff.errors)
        tree.broken_files[path] = "; ".join(str(e.field) + ": " + e.message for e in ff.errors)
        return None
    return ff


def own_problems(path: str, ff: FileFacts, env_names: Collection[str], limits: TreeLimits) -> list[ConfigError]:
    """What is wrong with a file on its own: its spec, its references' form, its limits, its variables."""
    errs = list(ff.errors)
    errs.extend(ConfigError(path=path, field=f, message=m) for f, m in ff.ref_problems)
    errs.extend(_limit_problems(path, ff, limits))
    errs.extend(
        ConfigError(path=path, field=f, message=message)
        for f, name in ff.variables
        if (message := _variable_problem(f, name, env_names)) is not None
    )
    return errs


def _limit_problems(path: str, ff: FileFacts, limits: TreeLimits) -> list[ConfigError]:
    errs = []
    if len(ff.refs) > limits.max_refs:
        errs.append(
            ConfigError(
                path=path,
                message=f"has {len(ff.refs):,} references, over the limit of {limits.max_refs:,} (MAX_REFERENCES)",
            )
        )
    if ff.participants > limits.max_participants:
        errs.append(
            ConfigError(
                path=path,
                field=f"config.{members_field(ff.component_type)}",
                message=f"has {ff.participants:,} participants, "
                f"over the limit of {limits.max_participants:,} (MAX_PARTICIPANTS)",
            )
        )
    return errs


def _variable_problem(where: str, name: str, env_names: Collection[str]) -> str | None:
    if where == "label":  # the worker would resolve it: Studio's row would carry another name than the tree's
        return f"a label cannot hold a variable (${{{name}}})"
    if NESTED in name:
        return f"${{{name}}}}}: a default cannot hold another variable (nested defaults are not supported)"
    if not is_valid_variable_name(name):
        return f"invalid variable name ${{{name}}} (for the text itself, write $${{{name}}})"
    if name not in env_names:
        return f"environment variable {name} is not set"
    return None


def _link(tree: Tree, by_label: dict[str, list[Node]], problems: dict[str, list[ConfigError]]) -> None:
    """Nodes by label, with duplicate labels, unknown references and cycles added to `problems`."""
    for label, nodes in by_label.items():
        tree.nodes[label] = nodes[0]
        if len(nodes) > 1:
            _duplicates(label, nodes, problems)
            for other in nodes[1:]:  # reported by their path, as every file the tree cannot use
                tree.broken_files[other.path] = "; ".join(f"{e.field}: {e.message}" for e in problems[other.path])
    for node in tree.nodes.values():
        _unknown_refs(node, tree.nodes, problems, tree.broken_files)
        node.deps = [d for d in node.deps if d in tree.nodes]
    deps = {label: node.deps for label, node in tree.nodes.items()}
    for cycle in find_cycles(deps):
        _cut_cycle(cycle, tree.nodes, problems)


def _add(problems: dict[str, list[ConfigError]], error: ConfigError) -> None:
    problems.setdefault(error.path, []).append(error)


def _duplicates(label: str, nodes: list[Node], problems: dict[str, list[ConfigError]]) -> None:
    paths = [n.path for n in nodes]
    for n in nodes:
        others = ", ".join(p for p in paths if p != n.path)
        _add(
            problems,
            ConfigError(path=n.path, field="label", message=f"duplicate label {label!r}, also used by {others}"),
        )


def broken_file_named(label: str, broken: Mapping[str, str]) -> str:
    """A file that could not be used (a FIFO, bad YAML) named after a label nothing has: the
    likely one, said as the end of the message that the label is unknown; or ""."""
    named = sorted(p for p in broken if p.rsplit("/", 1)[-1].rsplit(".", 1)[0] == label)
    return f"; its file may be {', '.join(named)}, which could not be used" if named else ""


def _unknown_refs(
    node: Node, nodes: dict[str, Node], problems: dict[str, list[ConfigError]], broken: Mapping[str, str]
) -> None:
    for f, target in node.refs:
        if target not in nodes:
            message = f"unknown reference {target!r}: no component has that label{broken_file_named(target, broken)}"
            _add(problems, ConfigError(path=node.path, field=f, message=message))


def _cut_cycle(cycle: list[str], nodes: dict[str, Node], problems: dict[str, list[ConfigError]]) -> None:
    """Each node of the cycle gets the error; the cycle is cut so the rest of the graph can be layered."""
    text = " -> ".join(f"{lbl} ({nodes[lbl].path})" for lbl in cycle + cycle[:1])
    for lbl in cycle:
        _add(problems, ConfigError(path=nodes[lbl].path, message=f"reference cycle: {text}"))
    for lbl in cycle:
        nodes[lbl].deps = [d for d in nodes[lbl].deps if d not in cycle]


def _key(tree: Tree, limits: TreeLimits) -> None:
    """Dependencies first: skip what depends on an invalid node, bound the resolved size, and key
    every valid node by its content and its dependencies' keys (Merkle)."""
    all_deps = {label: node.deps for label, node in tree.nodes.items()}
    for layer in waves(all_deps):
        for label in layer:
            if label not in tree.invalid:
                _key_node(tree, label, limits)


def _key_node(tree: Tree, label: str, limits: TreeLimits) -> None:
    """Skip the node, refuse it for its size, or key it: its dependencies already decided."""
    node = tree.nodes[label]
    skipped = _skipped_for(tree, node)
    if skipped is not None:
        tree.skipped[label] = skipped
        return
    node.resolved_size = node.size + sum(tree.nodes[t].resolved_size for _, t in node.refs)
    if node.resolved_size > limits.max_request_bytes:
        error = ConfigError(
            path=node.path,
            message=f"is {node.resolved_size:,} bytes with its references inlined, "
            f"over the limit of {limits.max_request_bytes:,} (MAX_REQUEST_BYTES)",
        )
        tree.errors.append(error)
        tree.invalid[label] = str(error)
        return
    node.key = node_key(node.content_hash, [(d, tree.nodes[d].key) for d in node.deps])


def _skipped_for(tree: Tree, node: Node) -> str | None:
    """Why the node is skipped: the first of its dependencies that is invalid or skipped; else None."""
    bad = next((d for d in node.deps if d in tree.invalid or d in tree.skipped), None)
    if bad is None:
        return None
    state = "is invalid" if bad in tree.invalid else "was skipped"
    return f"depends on {bad!r} ({tree.nodes[bad].path}) which {state}"
