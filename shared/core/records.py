"""The parameter records of a new run: what the producer hands the store to write in one go."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from shared.core.run_model import NodeState, RunMeta

# What a worker needs to do one node: JSON shaped by the run's kind (a sync's component and its
# facts, a workflow task's record). Config data, so its values are any JSON.
Spec = dict[str, Any]
# A cached result as the cache holds it: the JSON of the fields a node's state takes from it.
CacheEntry = dict[str, Any]


class AgentRecord(TypedDict):
    """What runs a workflow task, as the producer resolves it in the tree."""

    task: dict[str, Any]  # WorkflowTask.model_dump(): every field of it present, defaults written
    agent: dict[str, Any]  # its agent's (or team's) component, references resolved, ${VAR}s as written
    agent_path: str  # the file it is in (the worker's errors name it)
    agent_files: dict[str, str]  # field path inside it -> the file a referenced component is in
    mistyped: list[dict[str, Any]]  # the tree's type mismatches in it (Tree.mistyped)
    agent_key: str  # its content key (part of the task's cache key)
    goal: str  # the workflow's goal


class TaskRecord(AgentRecord):
    """A workflow task's record, as a worker reads it from the run (a Spec of a workflow run)."""

    rank: int  # its place in the run's critical path: higher starts first
    checked: bool  # the producer looked its cache entry up already (none)
    dependents: list[str]  # the tasks waiting on it
    dependent_ranks: dict[str, tuple[int, int]]  # each dependent's (rank, broker priority); a list read back


@dataclass(frozen=True)
class Lookup:
    """What the cache holds for a tree's sync, read in one round trip."""

    hits: list[CacheEntry | None]  # by node key, in the order asked
    gallery: CacheEntry | None  # the gallery entry's, when Studio's entry was last written with its key
    last_keys: dict[str, str]  # label -> the node key this tree last synced it with
    gallery_tree: str | None  # the tree whose sync last wrote the gallery entry


@dataclass(frozen=True)
class Settled:
    """A node's first state made once, with its JSON (the run's record) and its data (the report's):
    a resident process plans the same states of 10,000 unchanged nodes again on every sync, which
    costs 0.15 s to validate and encode each time (producer/planner.py keeps them)."""

    state: NodeState
    json: str
    data: dict[str, Any]

    @classmethod
    def of(cls, state: NodeState) -> Settled:
        return cls(state, state.to_json(), state.to_dict())


def encoded(state: NodeState, known: Settled | None) -> str:
    """The state's JSON, from `known` when that is of this very state."""
    return known.json if known is not None and known.state is state else state.to_json()


def as_data(state: NodeState, known: Settled | None) -> dict[str, Any]:
    """The state's data (a copy: the caller may change it), from `known` when that is of this very state."""
    return dict(known.data) if known is not None and known.state is state else state.to_dict()


@dataclass(frozen=True)
class NewRun:
    """A run as it starts: its meta, every node's first state, each node's spec, and a sync's waves
    (wave -> batches -> labels). `settled`: first states made before, with their JSON."""

    meta: RunMeta
    nodes: Mapping[str, NodeState]
    specs: Mapping[str, Spec] | Mapping[str, TaskRecord]
    waves: Sequence[Sequence[Sequence[str]]] = ()
    settled: Mapping[str, Settled] = field(default_factory=dict)


@dataclass(frozen=True)
class Release:
    """A workflow run's release bookkeeping as it starts: open inputs per task, the tasks ready now,
    and the outputs and transcripts (JSON) of the tasks found in the cache."""

    open_inputs: Mapping[str, int] = field(default_factory=dict)
    ready: Sequence[str] = ()
    outputs: Mapping[str, str] = field(default_factory=dict)
    transcripts: Mapping[str, str] = field(default_factory=dict)


# One message of a workflow task's transcript (workers/agent_runtime.py): source, kind, content, calls, results.
TranscriptMessage = dict[str, Any]
# An AutoGen component (or a gallery entry's config) as JSON, as Studio takes and gives it.
Component = dict[str, Any]
# A row of Studio's REST API (a team, a gallery entry) as it answers it.
Row = dict[str, Any]
# A worker's last resource reading (workers/resources.py): host, cpu, memory, disk, throttled, queues, ts.
HostReading = dict[str, Any]
