"""What the tree needs to know about one file, computed once per file content. Pure, no I/O.

The scanner keeps these beside its stat cache, so an unchanged file is neither parsed nor
validated nor hashed again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.core.components import members_field
from shared.core.errors import ConfigError
from shared.core.hashing import canonical_json, sha256_hex
from shared.core.refs import find_refs, find_variables, plain_variables
from shared.core.specs import validate_spec


@dataclass
class FileFacts:
    label: str | None  # None: the file has no usable label and cannot be a node
    component_type: str
    content_hash: str
    errors: list[ConfigError] = field(default_factory=list)
    refs: list[tuple[str, str]] = field(default_factory=list)  # (field path, label)
    ref_problems: list[tuple[str, str]] = field(default_factory=list)  # (field path, problem)
    variables: list[tuple[str, str]] = field(default_factory=list)  # (field path, name)
    size: int = 0  # bytes of the canonical JSON, before references are inlined
    participants: int = 0  # a team's participants (its type's members), inline or referenced
    plain: list[tuple[str, str | None]] = field(default_factory=list)  # (name, default): values in its key

    def keyed_hash(self, env: Mapping[str, str]) -> str:
        """The content hash with the values its variables that are no secret have in `env`: the
        same file under another `${MODEL}` is another component. A secret's value stays out
        (its name is in the content); a rotated key is a `--force`."""
        if not self.plain:
            return self.content_hash
        values = [[name, env.get(name, default)] for name, default in self.plain]
        return sha256_hex(canonical_json([self.content_hash, values]))

    def to_json(self) -> list[Any]:
        return [
            self.label,
            self.component_type,
            self.content_hash,
            [e.model_dump() for e in self.errors],
            self.refs,
            self.ref_problems,
            self.variables,
            self.size,
            self.participants,
            self.plain,
        ]

    @classmethod
    def from_json(cls, data: list[Any]) -> FileFacts:
        # pairs stay JSON lists here: this runs for every unchanged file on every scan
        label, ctype, digest, errors, refs, problems, variables, size, participants, plain = data
        return cls(
            label,
            ctype,
            digest,
            [ConfigError(**e) for e in errors] if errors else [],
            refs,
            problems,
            variables,
            size,
            participants,
            plain,
        )


WORKFLOW = "workflow"


def is_workflow(doc: dict[str, Any]) -> bool:
    return doc.get("kind") == WORKFLOW or doc.get("component_type") == WORKFLOW


def file_facts(path: str, doc: dict[str, Any]) -> FileFacts:
    canonical = canonical_json(doc)
    digest = sha256_hex(canonical)
    if is_workflow(doc):  # workflows live in the tree but are run, not synced
        return FileFacts(None, WORKFLOW, digest)
    spec = validate_spec(path, doc)
    if isinstance(spec, list):
        if not _usable_label(doc, spec):
            return FileFacts(None, "", digest, spec)
        # The label is usable: the file stays an invalid node, so that what references it is
        # skipped naming it rather than reported as referencing an unknown label.
        ctype = doc.get("component_type")
        errors, label, component_type = spec, str(doc["label"]), ctype if isinstance(ctype, str) else ""
    else:
        errors, label, component_type = [], spec.label, spec.component_type
    refs, problems = find_refs(doc)
    return FileFacts(
        label,
        component_type,
        digest,
        errors,
        refs,
        problems,
        find_variables(doc),
        len(canonical),
        _participants(doc, component_type),
        plain_variables(doc),
    )


def _usable_label(doc: dict[str, Any], errors: list[ConfigError]) -> bool:
    label = doc.get("label")
    return isinstance(label, str) and bool(label) and not any(e.field == "label" for e in errors)


def _participants(doc: dict[str, Any], component_type: str) -> int:
    """How many members a team lists (0 for anything else)."""
    config = doc.get("config")
    group = members_field(component_type)  # a team's participants
    members = config.get(group) if isinstance(config, dict) and group is not None else None
    return len(members) if isinstance(members, list) else 0
