"""Where `producer pull` puts what Studio holds: one component per file, shared parts as `$ref`s,
secrets as `${VAR}`s. Pure, no I/O: producer/pull.py reads Studio and the tree and writes files.
Each type's folder is its entry's in shared/core/components.py.

The rules, so that `sync` then `pull` changes no file and `pull` then `sync` writes no team row:
- a team (or gallery component) whose content, secrets masked, equals what the tree would send
  for its label leaves its file untouched;
- in the teams that are written, a part (a component of a type without rows of its own: agent,
  model, tool, termination, workbench, model context) becomes its own file, referenced by `$ref`, when the same label with the same content
  occurs in two or more of them, or when the tree already has a file for that label; a label
  that occurs with different contents stays inline wherever its content is not the file's;
- a non-empty secret field (`api_key`, `password`...) is written as `${VAR}`: the variable the
  file already used at that place, or one named after the component's label;
- any other value the file wrote as a `${VAR}` that still expands to what Studio holds stays so.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.core.components import folder, is_part
from shared.core.refs import MissingVariable, literal_text, substitute_variables
from shared.core.secrets import content_hash, is_secret_field

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
_USED = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(:-)?")
Format = Literal["yaml", "json"]
Action = Literal["create", "update", "unchanged"]


@dataclass(frozen=True)
class Existing:
    """A component file the tree already has."""

    label: str
    path: str  # relative to the tree
    component_type: str
    document: dict[str, Any]  # as written, `$ref`s and `${VAR}`s included
    sent: dict[str, Any] | None  # what a sync sends for it (refs inlined, variables set); None: cannot say


@dataclass
class FileWrite:
    path: str
    label: str
    document: dict[str, Any]
    action: Action

    @property
    def format(self) -> Format:
        return "json" if self.path.lower().endswith(".json") else "yaml"


@dataclass
class Layout:
    files: list[FileWrite] = field(default_factory=list)
    variables: dict[str, list[str]] = field(default_factory=dict)  # VAR -> "path: field" that use it
    warnings: list[str] = field(default_factory=list)

    def changed(self) -> list[FileWrite]:
        return [f for f in self.files if f.action != "unchanged"]


def is_component(value: object) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("provider"), str)
        and isinstance(value.get("component_type"), str)
    )


def parts(component: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every component nested in `component`, at any depth (not `component` itself)."""

    def walk(value: Any) -> Iterator[dict[str, Any]]:
        if isinstance(value, dict):
            for child in value.values():
                if is_component(child):
                    yield child
                yield from walk(child)
        elif isinstance(value, list):
            for child in value:
                if is_component(child):
                    yield child
                yield from walk(child)

    return walk(component)


SLUG_CHARS = 80  # a file name stays well under the 255 bytes file systems allow


def slug(label: str) -> str:
    """A file name's stem for `label`; a long label is cut, with a digest of it so it stays its own."""
    text = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "component"
    if len(text) <= SLUG_CHARS:
        return text
    return text[:SLUG_CHARS].rstrip("-") + "-" + hashlib.sha256(label.encode("utf-8")).hexdigest()[:8]


def variable_name(label: str, field_name: str) -> str:
    base = re.sub(r"[^A-Z0-9]+", "_", label.upper()).strip("_") or "COMPONENT"
    if base[0].isdigit():
        base = "_" + base
    return f"{base}_{field_name.upper()}"


def _label(component: dict[str, Any]) -> str | None:
    label = component.get("label")
    return label if isinstance(label, str) and label.strip() else None


def plan_pull(
    teams: list[dict[str, Any]],
    gallery: list[dict[str, Any]],
    existing: Mapping[str, Existing],
    env: Mapping[str, str],
    taken: Collection[str] = (),
    templates: Mapping[str, Any] | None = None,
) -> Layout:
    """The files a pull writes for Studio's `teams` (components of team rows) and the tree's
    gallery entry's standalone components, given the tree's `existing` files by label; a new
    file never takes a path in `taken` (every file the tree has, broken ones included).
    `templates`: by label, what the file a sync last wrote the component from held (references
    inlined, `${VAR}`s as written): a label with no file in the tree gets its placeholders back
    from it, `${VAR:-default}`s included."""
    layout = Layout()
    top = _top_level(teams, gallery, layout.warnings)
    written = {lbl: c for lbl, c in top.items() if not _same_as_tree(existing.get(lbl), c)}
    own = {lbl: content_hash(c) for lbl, c in top.items()}  # label -> the content its file holds
    _shared_parts(written, existing, own)
    used = {e.path for e in existing.values()} | set(taken)
    for lbl in sorted(own):
        known = existing.get(lbl)
        component = written.get(lbl)
        if component is not None:
            before = known.document if known else (templates or {}).get(lbl)
            layout.files.append(_file_write(lbl, component, known, before, own, used, env, layout.variables))
        elif known is not None:  # the tree's file says it already
            layout.files.append(FileWrite(known.path, lbl, known.document, "unchanged"))
    return layout


def _file_write(
    lbl: str,
    component: dict[str, Any],
    known: Existing | None,
    before: Any,
    own: Mapping[str, str],
    used: set[str],
    env: Mapping[str, str],
    variables: dict[str, list[str]],
) -> FileWrite:
    """The file for one pulled component: the tree's own file for its label, else a new path not in
    `used`; `before` is what held its placeholders (the tree's file, or the sync's template)."""
    if known is not None:
        path = known.path
    else:
        path = _free_path(f"{folder(component['component_type'])}/{slug(lbl)}", used)
        used.add(path)
    document = _with_refs(component, own, top_level=True)
    document = _keep_variables(document, before, env, lbl, variables, path)
    action: Action = "create" if known is None else "unchanged" if document == known.document else "update"
    return FileWrite(path, lbl, document, action)


def _top_level(teams: list[dict[str, Any]], gallery: list[dict[str, Any]], warnings: list[str]) -> dict[str, Any]:
    """label -> component, for the teams and gallery components pulled (first one per label)."""
    top: dict[str, dict[str, Any]] = {}
    for component in [*teams, *gallery]:
        label = _label(component)
        kind = component.get("component_type")
        if label is None or folder(kind) is None:
            warnings.append(f"skipped a {kind or 'component'} with no label or of an unknown type")
        elif label not in top:
            top[label] = component
        elif content_hash(top[label]) != content_hash(component):
            warnings.append(f"{label}: Studio holds it twice with different contents; the first is pulled")
    return top


def _same_as_tree(known: Existing | None, component: dict[str, Any]) -> bool:
    return known is not None and known.sent is not None and content_hash(known.sent) == content_hash(component)


def _shared_parts(written: dict[str, Any], existing: Mapping[str, Existing], own: dict[str, str]) -> None:
    """Add to `own` (and, when a file must be written for them, to `written`) the parts of the
    written components that get a file of their own."""
    occurrences, samples = _part_occurrences(list(written.values()))
    by_label: dict[str, list[tuple[int, str]]] = {}
    for (lbl, digest), count in occurrences.items():
        by_label.setdefault(lbl, []).append((count, digest))
    for lbl, variants in sorted(by_label.items()):
        kind = samples[(lbl, variants[0][1])]["component_type"]
        known = existing.get(lbl)
        if lbl in own or not _may_have_file(kind, known):
            continue  # a team or gallery component of that label decides its file; or not a part
        as_is = _as_in_tree(known, variants)
        if as_is is not None:
            own[lbl] = as_is  # the file as it is serves
            continue
        count, digest = max(variants)
        if count >= 2 or known is not None:
            own[lbl] = digest
            written[lbl] = samples[(lbl, digest)]


def _part_occurrences(
    components: list[dict[str, Any]],
) -> tuple[Counter[tuple[str, str]], dict[tuple[str, str], dict[str, Any]]]:
    """How many of `components` hold each labelled part, by (label, content hash), and the first of each."""
    occurrences: Counter[tuple[str, str]] = Counter()
    samples: dict[tuple[str, str], dict[str, Any]] = {}
    for component in components:
        found = {(lbl, content_hash(p)): p for p in parts(component) if (lbl := _label(p))}
        occurrences.update(found.keys())
        for key, p in found.items():
            samples.setdefault(key, p)
    return occurrences, samples


def _may_have_file(kind: str, known: Existing | None) -> bool:
    """A part, and not of another type than the tree's file of its label."""
    return is_part(kind) and (known is None or known.component_type == kind)


def _as_in_tree(known: Existing | None, variants: list[tuple[int, str]]) -> str | None:
    """The content hash of the tree's file when one of the variants pulled is what it sends; else None."""
    if known is None or known.sent is None:
        return None
    digest = content_hash(known.sent)
    return digest if digest in {d for _, d in variants} else None


def _free_path(stem: str, taken: set[str]) -> str:
    path, n = f"{stem}.yaml", 2
    while path in taken:
        path, n = f"{stem}-{n}.yaml", n + 1
    return path


def _with_refs(component: dict[str, Any], own: Mapping[str, str], top_level: bool = False) -> Any:
    """`component` with every nested part that has its own file replaced by a `$ref` to it."""
    if not top_level and is_component(component):
        label = _label(component)
        if label is not None and own.get(label) == content_hash(component):
            return {"$ref": label}

    def inner(value: Any) -> Any:
        if is_component(value):
            return _with_refs(value, own)
        if isinstance(value, dict):
            return {k: inner(v) for k, v in value.items()}
        if isinstance(value, list):
            return [inner(v) for v in value]
        return value

    return {k: inner(v) for k, v in component.items()}


def _keep_variables(
    new: Any, old: Any, env: Mapping[str, str], label: str, variables: dict[str, list[str]], path: str
) -> Any:
    """`new` with secrets as `${VAR}`s and the old file's `${VAR}`s kept where they still hold."""
    return _Variables(env, variables, path).walk(new, old, label, "")


class _Variables:
    """One file's walk: the `${VAR}`s it uses are added to `variables` (VAR -> "path: field")."""

    def __init__(self, env: Mapping[str, str], variables: dict[str, list[str]], path: str) -> None:
        self.env, self.variables, self.path = env, variables, path

    def walk(self, value: Any, before: Any, owner: str, dotted: str) -> Any:
        """`value` as the file writes it, `before` what the old file held there; `owner` the label of
        the component it is in (a variable is named after it)."""
        if isinstance(value, dict):
            return value if isinstance(value.get("$ref"), str) else self._mapping(value, before, owner, dotted)
        if isinstance(value, list):
            prior = before if isinstance(before, list) and len(before) == len(value) else [None] * len(value)
            return [self.walk(v, b, owner, f"{dotted}[{i}]") for i, (v, b) in enumerate(zip(value, prior, strict=True))]
        return self._text(value, before, dotted)

    def _mapping(self, value: dict[str, Any], before: Any, owner: str, dotted: str) -> dict[str, Any]:
        owner = str(_label(value)) if is_component(value) and _label(value) else owner
        prior = before if isinstance(before, dict) and "$ref" not in before else {}
        out = {}
        for key, child in value.items():
            at = f"{dotted}.{key}" if dotted else str(key)
            if isinstance(child, str) and child and is_secret_field(str(key)):
                out[key] = self._secret(prior.get(key), owner, str(key), at)
            else:
                out[key] = self.walk(child, prior.get(key), owner, at)
        return out

    def _used(self, text: str, at: str) -> None:
        for escaped, var, default in _USED.findall(text):
            if not escaped and not default:  # `$${X}` is the text `${X}`; `${X:-d}` needs no X
                self.variables.setdefault(var, []).append(f"{self.path}: {at}")

    def _secret(self, kept: Any, owner: str, key: str, at: str) -> str:
        """A secret field: the old file's `${VAR}` where it had one, else a new `${VAR}` named for it."""
        match = _VAR.search(kept) if isinstance(kept, str) else None
        kept_text = str(kept) if match else f"${{{variable_name(owner, key)}}}"
        self._used(kept_text, at)
        return kept_text

    def _text(self, value: Any, before: Any, at: str) -> Any:
        """The old file's text with its `${VAR}`s where, with them set (or their defaults), it says
        what Studio holds."""
        if not isinstance(value, str):
            return value
        literal = literal_text(value)  # Studio's text as it reads: no variable of the next sync
        if not (isinstance(before, str) and "${" in before):
            return literal
        try:
            if substitute_variables(before, self.env) != value:
                return literal
        except MissingVariable:
            return literal
        self._used(before, at)
        return before
