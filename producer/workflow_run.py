"""`producer run`: check a workflow against its tree, look its tasks up in the cache, enqueue the rest."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from producer.launch import launch
from producer.scanner import default_cache_path, scan
from shared.core.components import kind_of
from shared.core.endpoints import missing_packages
from shared.core.errors import ConfigError
from shared.core.exceptions import InvalidInput
from shared.core.loader import parse_document
from shared.core.prompts import task_key
from shared.core.run_model import NodeState, RunKind, RunMeta, Status
from shared.core.tree import Tree, build_tree
from shared.core.workflow import Workflow, celery_priorities, check_workflow, parse_workflow, release_plan, schedule
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


def load(file: Path, tree_root: Path | None, settings: Settings) -> PreparedWorkflow:
    if tree_root is not None and not tree_root.is_dir():
        why = "is not a directory" if tree_root.exists() else "does not exist"
        raise InvalidInput(f"the tree {tree_root} {why}: --tree names the folder the workflow's agents come from")
    root = (tree_root or default_tree_root(file)).resolve()
    rel = str(file.resolve().relative_to(root)) if file.resolve().is_relative_to(root) else str(file)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise WorkflowInvalid([ConfigError(path=str(file), message=f"cannot read file: {exc.strerror}")]) from exc
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
    result = scan(root, default_cache_path(root, settings.cache_dir), limits=scan_limits(settings))
    tree = build_tree(result.documents, environment().keys(), result.facts, limits=tree_limits(settings))
    errors = check_workflow(rel, workflow, tree)
    if not errors and settings.redis_url is None:
        # the embedded worker runs in this environment: what it cannot import is known now
        memo: dict[str, Any] = {}
        missing: dict[str, list[str]] = {}  # per agent: thousands of tasks share a few agents
        for t in workflow.tasks:
            if t.agent not in missing:
                missing[t.agent] = missing_packages(tree.resolved(t.agent, memo), installed)
        errors = [
            ConfigError(path=rel, field=f"tasks[{i}].agent", message=f"task {t.id!r}: {problem}")
            for i, t in enumerate(workflow.tasks)
            for problem in missing[t.agent]
        ]
    if errors:
        raise WorkflowInvalid(errors)
    return PreparedWorkflow(file.resolve(), root, workflow, tree)


def component_said(doc: object) -> str | None:
    """ "a model component (label 'm')" when `doc` is a component of a known type, not a workflow."""
    if not isinstance(doc, dict) or doc.get("kind") == "workflow":
        return None
    ctype = doc.get("component_type")
    if ctype == "workflow" or kind_of(ctype) is None:
        return None
    label = doc.get("label")
    return f"a {ctype} component" + (f" (label {label!r})" if isinstance(label, str) and label else "")


def installed(module: str) -> bool:
    """Whether `module` can be imported here, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing
        return False


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
    memo: dict[str, Any] = {}
    records = {t.id: {"task": t.model_dump(), "agent": tree.resolved(t.agent, memo), "goal": wf.goal} for t in wf.tasks}
    metrics = Metrics()
    states, outputs, checked, transcripts = _cached_states(store, wf, records, no_cache, metrics)
    pending = [t for t in wf.tasks if t.id not in states]
    for t in pending:
        states[t.id] = {
            "status": Status.PENDING,
            "type": tree.nodes[t.agent].component_type,
            "agent": t.agent,
            "priority": t.priority,
        }
    rest = (
        Workflow(
            name=wf.name,
            goal=wf.goal,
            tasks=[
                t.model_copy(update={"dependencies": [d for d in t.dependencies if d not in outputs]}) for t in pending
            ],
        )
        if pending
        else None
    )
    plan = release_plan(rest, sequential) if rest else None
    prio = celery_priorities(wf)
    by_id = {t.id: t for t in wf.tasks}

    def released(tid: str) -> tuple[int, int]:  # (rank, Redis message priority) of a task when it is released
        assert plan is not None
        return plan.ranks[tid], prio[by_id[tid].priority]

    specs = {}
    for t in pending:
        assert plan is not None
        dependents = plan.dependents[t.id]
        specs[t.id] = {
            **records[t.id],
            "rank": plan.ranks[t.id],
            "checked": t.id in checked,
            "dependents": dependents,
            "dependent_ranks": {d: released(d) for d in dependents},
        }
    # before the run's clock starts: loading Celery takes ~0.1 s and is not the run's time
    publisher = dispatcher() if plan else None
    meta = RunMeta(
        kind=RunKind.WORKFLOW,
        workflow=wf.name,
        file=str(prepared.path),
        tree=str(prepared.tree_root),
        mode="sequential" if sequential else "parallel",
        no_cache=no_cache,
        total=len(wf.tasks),
        gallery_needed=False,
        ready=[(tid, *released(tid)) for tid in plan.ready] if plan else [],
        order=[tid for group in schedule(wf, sequential) for tid in group],
    )

    def write(run_id: str, meta: RunMeta) -> None:
        store.create_workflow_run(
            run_id, meta, states, specs, plan.open if plan else {}, plan.ready if plan else [], outputs, transcripts
        )

    run_id, _ = launch(store, meta, write, metrics, publisher)
    return run_id, plan is not None


def _cached_states(
    store: ResultCache, wf: Workflow, records: dict[str, dict[str, Any]], no_cache: bool, metrics: Metrics
) -> tuple[dict[str, NodeState], dict[str, str], set[str], dict[str, str]]:
    """Tasks whose result is cached, found group by group (a key needs its dependencies' outputs):
    their states, outputs and transcripts (JSON), and the tasks looked up and missed (the workers
    need not ask again)."""
    states: dict[str, NodeState] = {}
    outputs: dict[str, str] = {}
    transcripts: dict[str, str] = {}
    missed: set[str] = set()
    if no_cache:
        return states, outputs, missed, transcripts
    by_id = {t.id: t for t in wf.tasks}
    for group in schedule(wf):
        keys = {}
        for tid in group:
            task = by_id[tid]
            if not task.cache or any(d not in outputs for d in task.dependencies):
                continue
            inputs = [(d, states[d]["key"], outputs[d]) for d in task.dependencies]
            keys[tid] = task_key(wf.goal, records[tid]["task"], records[tid]["agent"], inputs)
        if not keys:
            break
        for tid, hit in zip(keys, store.task_results(list(keys.values())), strict=True):
            metrics.inc("agentq_cache_requests_total", ["workflow_task", "hit" if hit else "miss"])
            if hit:
                result = dict(hit)
                outputs[tid] = result.pop("output")
                if result.get("transcript"):
                    transcripts[tid] = json.dumps(result["transcript"])
                result.pop("transcript", None)
                # a cache entry is the JSON of the summary fields a worker wrote (workers/workflow_exec.py)
                states[tid] = {
                    **cast(NodeState, result),
                    "status": Status.CACHED,
                    "key": keys[tid],
                    "agent": by_id[tid].agent,
                    "priority": by_id[tid].priority,
                }
                metrics.inc("agentq_workflow_tasks_total", [Status.CACHED])
            else:
                missed.add(tid)
    return states, outputs, missed, transcripts
