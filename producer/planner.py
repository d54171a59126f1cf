"""What a sync must do, given a tree and what the cache already holds. Pure, no I/O."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from shared.core.components import gallery_section
from shared.core.graph import waves
from shared.core.hashing import gallery_key
from shared.core.records import CacheEntry, Settled
from shared.core.run_model import NodeState, Status
from shared.core.tree import Tree

# Enough batches per wave to keep several workers busy, however small the wave.
MIN_BATCHES_PER_WAVE = 8
# what decided a node's first state (its label and its fields) -> that state, made once
FirstStates = dict[tuple[object, ...], Settled]


@dataclass
class Plan:
    tree_name: str
    gallery_name: str
    states: dict[str, NodeState]  # initial state of every node (and of every broken file)
    changes: dict[str, str]  # label -> new | changed | unchanged | invalid | skipped | drifted
    waves: list[list[list[str]]] = field(default_factory=list)  # wave -> batches -> labels
    gallery_key: str | None = None
    gallery_members: list[str] = field(default_factory=list)
    gallery_needed: bool = False
    # with a resident process's last first states (make_plan's `known`): label -> its state made
    # once, and these for the next plan
    settled: dict[str, Settled] = field(default_factory=dict)
    first_states: FirstStates = field(default_factory=dict)

    @property
    def to_run(self) -> list[str]:
        return [lbl for wave in self.waves for batch in wave for lbl in batch]

    @property
    def has_work(self) -> bool:
        return bool(self.waves) or self.gallery_needed


def gallery_members(tree: Tree) -> list[str]:
    """The valid nodes that go into the tree's gallery entry (the types with a gallery section and
    no rows of their own)."""
    return [lbl for lbl in tree.valid if gallery_section(tree.nodes[lbl].component_type) is not None]


def tree_gallery_key(tree: Tree, name: str, members: list[str] | None = None) -> str | None:
    """The gallery entry's key: its name and its members' keys (None: no member)."""
    members = gallery_members(tree) if members is None else members
    return gallery_key(name, [(m, tree.nodes[m].key) for m in members]) if members else None


def _gallery(tree: Tree, name: str) -> tuple[list[str], str | None]:
    """The gallery entry's members and key."""
    members = gallery_members(tree)
    return members, tree_gallery_key(tree, name, members)


def split(labels: list[str], batch_size: int) -> list[list[str]]:
    size = max(1, min(batch_size, math.ceil(len(labels) / MIN_BATCHES_PER_WAVE)))
    return [labels[i : i + size] for i in range(0, len(labels), size)]


# Why a node does not run, by where the tree or Studio says so: its first state's fields and its change
NOT_RUN: tuple[tuple[str, Callable[[str], dict[str, object]], str], ...] = (
    ("invalid", lambda why: {"status": Status.FAILED, "error": why}, "invalid"),
    ("skipped", lambda why: {"status": Status.SKIPPED, "reason": why}, "skipped"),
    ("drifted", lambda why: {"status": Status.SKIPPED, "drifted": True, "reason": why}, "drifted"),
)


def _first_state(
    label: str,
    reasons: Mapping[str, Mapping[str, str]],
    cached: Mapping[str, CacheEntry | None],
    last_keys: Mapping[str, str],
) -> tuple[dict[str, object], str]:
    """A node's first state's own fields (its type and path aside), and what changed for it:
    invalid, skipped, drifted, unchanged (cached), changed or new. `reasons`: for each of invalid,
    skipped and drifted, label -> why."""
    for where, fields, change in NOT_RUN:
        if label in reasons[where]:
            return fields(reasons[where][label]), change
    if label in cached:
        # the cache entry's fields (outcome, team or gallery id) are the node's own
        return {**(cached[label] or {}), "status": Status.CACHED, "outcome": "unchanged"}, "unchanged"
    return {"status": Status.PENDING}, "changed" if label in last_keys else "new"


def make_plan(
    tree: Tree,
    *,
    tree_name: str,
    gallery_name: str,
    cached: Mapping[str, CacheEntry | None],
    gallery_cached: bool,
    last_keys: dict[str, str],
    batch_size: int,
    drifted: dict[str, str] | None = None,
    refused: dict[str, str] | None = None,
    gallery: tuple[list[str], str | None] | None = None,
    known: FirstStates | None = None,
) -> Plan:
    """`cached`: label -> cached result for valid nodes whose key hit; `last_keys`: label -> key last
    synced; `drifted`: label -> how its Studio row was changed since the sync wrote it (left alone);
    `refused`: label -> why Studio's row is not this tree's to write (failed);
    `gallery`: the gallery entry's members and key, when the caller has them; `known`: the last
    plan's first states (Plan.first_states), for a resident process to take again."""
    drifted = drifted or {}
    states: dict[str, NodeState] = {}
    changes: dict[str, str] = {}
    for path, message in tree.broken_files.items():
        states[path] = NodeState(status=Status.FAILED, type=None, path=path, error=message)
        changes[path] = "invalid"
    reasons = {"invalid": {**(refused or {}), **tree.invalid}, "skipped": tree.skipped, "drifted": drifted}
    made = _Made(known)
    for label, node in tree.nodes.items():
        fields, changes[label] = _first_state(label, reasons, cached, last_keys)
        states[label] = made.state(label, {"type": node.component_type, "path": node.path, **fields})

    members, key = gallery or _gallery(tree, gallery_name)
    return Plan(
        tree_name=tree_name,
        gallery_name=gallery_name,
        states=states,
        changes=changes,
        waves=[split(wave, batch_size) for wave in waves(_pending_deps(tree, states))],
        gallery_key=key,
        gallery_members=members,
        gallery_needed=key is not None and not gallery_cached,
        settled=made.settled,
        first_states=made.first,
    )


class _Made:
    """First states, validated as they are made; or, with `known`, taken from there when the same."""

    def __init__(self, known: FirstStates | None) -> None:
        self.known = known
        self.settled: dict[str, Settled] = {}
        self.first: FirstStates = {}

    def state(self, label: str, fields: dict[str, object]) -> NodeState:
        if self.known is None:
            return NodeState.model_validate(fields)
        decided = (label, *fields.items())
        try:
            made = self.known.get(decided) or Settled.of(NodeState.model_validate(fields))
        except TypeError:  # a cache entry holding a list: not a key, made afresh
            return NodeState.model_validate(fields)
        self.first[decided] = self.settled[label] = made
        return made.state


def _pending_deps(tree: Tree, states: Mapping[str, NodeState]) -> dict[str, list[str]]:
    """Each node to run -> the nodes to run it depends on."""
    run = {lbl for lbl, st in states.items() if st.status == Status.PENDING}
    return {lbl: [d for d in tree.nodes[lbl].deps if d in run] for lbl in run}
