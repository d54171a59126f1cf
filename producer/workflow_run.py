"""`producer run`: check a workflow against its tree, look its tasks up in the cache, enqueue the rest."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from producer.launch import launch, new_run
from producer.scanner import default_cache_path, scan
from producer.walk import read_config_file
from shared.core.components import a_kind, kind_of
from shared.core.endpoints import missing_packages
from shared.core.errors import ConfigError
from shared.core.exceptions import InvalidInput
from shared.core.loader import parse_document
from shared.core.prompts import task_key
from shared.core.records import AgentRecord, CacheEntry, NewRun, Release, TaskRecord
from shared.core.run_model import NodeState, RunKind, RunMeta, Status
from shared.core.tree import Tree, build_tree
from shared.core.workflow import (
    ReleasePlan,
    Workflow,
    WorkflowTask,
    celery_priorities,
    check_workflow,
    parse_workflow,
    release_plan,
    schedule,
)
from shared.metrics import Metrics
from shared.settings import Settings, environment, scan_limits, tree_limits

if TYPE_CHECKING:
    from shared.ports import Dispatcher, ResultCache, Storage


class WorkflowInvalid(InvalidInput):
    def __init__(self, errors: list[ConfigError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


@dataclass
class PreparedWorkflow:
    path: Path
    tree_root: Path
    workflow: Workflow
    tree: Tree


def default_tree_root(file: Path) -> Path:
    """The folder above `workflows/`, or else the workflow's own folder."""
    parent = file.resolve().parent
    return parent.parent if parent.name == "workflows" else parent


def _root_of(file: Path, tree_root: Path | None) -> Path:
    """The tree the workflow's agents come from: --tree's folder, or the one the file's place says."""
    if tree_root is not None and not tree_root.is_dir():
        why = "is not a directory" if tree_root.exists() else "does not exist"
        raise InvalidInput(f"the tree {tree_root} {why}: --tree names the folder the workflow's agents come from")
    return (tree_root or default_tree_root(file)).resolve()


def load(file: Path, tree_root: Path | None, settings: Settings) -> PreparedWorkflow:
    root = _root_of(file, tree_root)
    rel = str(file.resolve().relative_to(root)) if file.resolve().is_relative_to(root) else str(file)
    workflow = _read_workflow(file, rel, scan_limits(settings).max_file_bytes)
    result = scan(root, default_cache_path(root, settings.cache_dir), limits=scan_limits(settings))
    tree = build_tree(result.documents, environment(), result.facts, limits=tree_limits(settings))
    errors = check_workflow(rel, workflow, tree, f"the tree {root} (--tree names another)")
    if not errors and settings.redis_url is None:
        # the embedded worker runs in this environment: what it cannot import is known now
        errors = _missing_packages(rel, workflow, tree)
    if errors:
        raise WorkflowInvalid(errors)
    return PreparedWorkflow(file.resolve(), root, workflow, tree)


def _missing_packages(rel: str, workflow: Workflow, tree: Tree) -> list[ConfigError]:
    """What each task's agent needs that this environment cannot import."""
    memo: dict[str, Any] = {}
    missing: dict[str, list[str]] = {}  # per agent: thousands of tasks share a few agents
    for t in workflow.tasks:
        if t.agent not in missing:
            missing[t.agent] = missing_packages(tree.resolved(t.agent, memo), installed)
    return [
        ConfigError(path=rel, field=f"tasks[{i}].agent", message=f"task {t.id!r}: {problem}")
        for i, t in enumerate(workflow.tasks)
        for problem in missing[t.agent]
    ]


def _read_workflow(file: Path, rel: str, max_bytes: int) -> Workflow:
    """The workflow in `file`; raises what is wrong with it as a file."""
    data = read_config_file(file, max_bytes)
    if isinstance(data, str):
        raise WorkflowInvalid([ConfigError(path=str(file), message=data)])
    doc = parse_document(rel, data)
    if isinstance(doc, ConfigError):
        raise WorkflowInvalid([doc])
    component = component_said(doc)
    if component:
        raise InvalidInput(
            f"{file} is {component}, not a workflow: `producer run` runs a workflow file (kind: workflow); "
            "`producer sync` registers components"
        )
    workflow = parse_workflow(rel, doc)
    if isinstance(workflow, list):
        raise WorkflowInvalid(workflow)
    return workflow


def component_said(doc: object) -> str | None:
    """ "a model component (label 'm')" when `doc` is a component of a known type, not a workflow."""
    if not isinstance(doc, dict) or doc.get("kind") == "workflow":
        return None
    ctype = doc.get("component_type")
    if ctype == "workflow" or kind_of(ctype) is None:
        return None
    label = doc.get("label")
    return f"{a_kind(str(ctype))} component" + (f" (label {label!r})" if isinstance(label, str) and label else "")


def installed(module: str) -> bool:
    """Whether `module` can be imported here, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing
        return False


@dataclass
class _Found:
    """What the cache held of a workflow's tasks: their states, outputs and transcripts (JSON), and
    the tasks looked up and missed (the workers need not ask again)."""

    states: dict[str, NodeState] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    transcripts: dict[str, str] = field(default_factory=dict)
    missed: set[str] = field(default_factory=set)


def _rest(
    wf: Workflow, pending: list[WorkflowTask], outputs: Mapping[str, str], sequential: bool
) -> ReleasePlan | None:
    """How the tasks not found in the cache are released, their cached inputs left out."""
    if not pending:
        return None
    tasks = [t.model_copy(update={"dependencies": [d for d in t.dependencies if d not in outputs]}) for t in pending]
    return release_plan(Workflow(name=wf.name, goal=wf.goal, tasks=tasks), sequential)


def _released_as(wf: Workflow, plan: ReleasePlan) -> dict[str, tuple[int, int]]:
    """Each task to run -> (rank, Redis message priority) it is published with when released."""
    prio = celery_priorities(wf)
    by_id = {t.id: t for t in wf.tasks}
    return {tid: (rank, prio[by_id[tid].priority]) for tid, rank in plan.ranks.items()}


def _task_specs(
    records: Mapping[str, AgentRecord],
    pending: list[WorkflowTask],
    plan: ReleasePlan,
    released: Mapping[str, tuple[int, int]],
    checked: set[str],
) -> dict[str, TaskRecord]:
    """What a worker needs of each task to run it and release its dependents."""
    return {
        t.id: TaskRecord(
            **records[t.id],
            rank=plan.ranks[t.id],
            checked=t.id in checked,
            dependents=plan.dependents[t.id],
            dependent_ranks={d: released[d] for d in plan.dependents[t.id]},
        )
        for t in pending
    }


def _task_records(wf: Workflow, tree: Tree) -> dict[str, AgentRecord]:
    """Each task's record: the task, its agent's component resolved in the tree and the file it is
    in (the worker's errors name it), the workflow's goal."""
    memo: dict[str, Any] = {}
    return {
        t.id: AgentRecord(
            task=t.model_dump(),
            agent=tree.resolved(t.agent, memo),
            agent_path=tree.nodes[t.agent].path,
            agent_files=tree.files_within(t.agent),
            mistyped=[m._asdict() for m in tree.mistyped(t.agent)],
            agent_key=tree.nodes[t.agent].key,
            goal=wf.goal,
        )
        for t in wf.tasks
    }


def _pending_state(tree: Tree, task: WorkflowTask) -> NodeState:
    kind = tree.nodes[task.agent].component_type
    return NodeState(status=Status.PENDING, type=kind, agent=task.agent, priority=task.priority)


@dataclass(frozen=True)
class _ToRun:
    """The tasks to run: each one's spec, the run's release bookkeeping, and the tasks released at
    the start as (task id, rank, message priority)."""

    specs: dict[str, TaskRecord]
    release: Release
    ready: tuple[tuple[str, int, int], ...]


def _to_run(
    wf: Workflow, records: Mapping[str, AgentRecord], pending: list[WorkflowTask], found: _Found, sequential: bool
) -> _ToRun:
    plan = _rest(wf, pending, found.outputs, sequential)
    if plan is None:
        return _ToRun({}, Release(outputs=found.outputs, transcripts=found.transcripts), ())
    released = _released_as(wf, plan)
    return _ToRun(
        _task_specs(records, pending, plan, released, found.missed),
        Release(plan.open, plan.ready, found.outputs, found.transcripts),
        tuple((tid, *released[tid]) for tid in plan.ready),
    )


def submit(
    prepared: PreparedWorkflow,
    settings: Settings,
    store: Storage,
    dispatcher: Callable[[], Dispatcher],
    *,
    sequential: bool = False,
    no_cache: bool = False,
) -> tuple[str, bool]:
    """Write the run to Redis and start it; returns (run id, whether anything was enqueued).
    `dispatcher` is called only when there is something to enqueue (it may start a local worker)."""
    wf, tree = prepared.workflow, prepared.tree
    records = _task_records(wf, tree)
    metrics = Metrics()
    found = _Found() if no_cache else _cached_states(store, wf, records, metrics)
    pending = [t for t in wf.tasks if t.id not in found.states]
    states = found.states | {t.id: _pending_state(tree, t) for t in pending}
    to_run = _to_run(wf, records, pending, found, sequential)
    # before the run's clock starts: loading Celery takes ~0.1 s and is not the run's time
    publisher = dispatcher() if to_run.specs else None
    meta = RunMeta(
        **new_run(),
        kind=RunKind.WORKFLOW,
        workflow=wf.name,
        file=str(prepared.path),
        tree=str(prepared.tree_root),
        mode="sequential" if sequential else "parallel",
        no_cache=no_cache,
        total=len(wf.tasks),
        gallery_needed=False,
        ready=to_run.ready,
        order=tuple(tid for group in schedule(wf, sequential) for tid in group),
    )

    def write(meta: RunMeta) -> None:
        store.create_workflow_run(NewRun(meta, states, to_run.specs), to_run.release)

    launch(store, meta, write, metrics, publisher)
    return meta.run_id, bool(to_run.specs)


def _task_keys(
    by_id: Mapping[str, WorkflowTask], group: list[str], records: Mapping[str, AgentRecord], found: _Found, goal: str
) -> dict[str, str]:
    """The cache keys of a group's tasks that are cached and whose inputs are all known."""
    keys = {}
    for tid in group:
        task = by_id[tid]
        if not task.cache or any(d not in found.outputs for d in task.dependencies):
            continue
        inputs = [(d, found.states[d].key or "", found.outputs[d]) for d in task.dependencies]
        record = records[tid]
        keys[tid] = task_key(goal, record["task"], record["agent"], inputs, record["agent_key"])
    return keys


def _take_hit(found: _Found, task: WorkflowTask, key: str, hit: CacheEntry) -> None:
    """A task found in the cache: its output, transcript and state."""
    result = dict(hit)
    found.outputs[task.id] = result.pop("output")
    transcript = result.pop("transcript", None)
    if transcript:
        found.transcripts[task.id] = json.dumps(transcript)
    # a cache entry is the JSON of the summary fields a worker wrote (workers/workflow_exec.py)
    found.states[task.id] = NodeState.model_validate(
        {**result, "status": Status.CACHED, "key": key, "agent": task.agent, "priority": task.priority}
    )


def _cached_states(store: ResultCache, wf: Workflow, records: Mapping[str, AgentRecord], metrics: Metrics) -> _Found:
    """Tasks whose result is cached, found group by group (a key needs its dependencies' outputs)."""
    found = _Found()
    by_id = {t.id: t for t in wf.tasks}
    for group in schedule(wf):
        keys = _task_keys(by_id, group, records, found, wf.goal)
        if not keys:
            break
        for tid, hit in zip(keys, store.task_results(list(keys.values())), strict=True):
            metrics.inc("agentq_cache_requests_total", ["workflow_task", "hit" if hit else "miss"])
            if hit:
                _take_hit(found, by_id[tid], keys[tid], hit)
                metrics.inc("agentq_workflow_tasks_total", [Status.CACHED])
            else:
                found.missed.add(tid)
    return found
