"""`producer run`: check a workflow against its tree, look its tasks up in the cache, enqueue the rest."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from producer.planner import split
from producer.scanner import default_cache_path, scan
from shared.errors import ConfigError
from shared.loader import parse_document
from shared.prompts import task_key
from shared.run_metrics import record_run
from shared.settings import Settings, environment
from shared.store import Store
from shared.tree import Tree, build_tree
from shared.workflow import Workflow, celery_priorities, check_workflow, parse_workflow, schedule

if TYPE_CHECKING:
    from celery import Celery


class WorkflowInvalid(Exception):
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
    root = (tree_root or default_tree_root(file)).resolve()
    rel = str(file.resolve().relative_to(root)) if file.resolve().is_relative_to(root) else str(file)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise WorkflowInvalid([ConfigError(path=str(file), message=f"cannot read file: {exc.strerror}")]) from exc
    doc = parse_document(rel, data)
    if isinstance(doc, ConfigError):
        raise WorkflowInvalid([doc])
    workflow = parse_workflow(rel, doc)
    if isinstance(workflow, list):
        raise WorkflowInvalid(workflow)
    result = scan(root, default_cache_path(root, settings.cache_dir))
    tree = build_tree(result.documents, environment().keys(), result.facts)
    errors = check_workflow(rel, workflow, tree)
    if errors:
        raise WorkflowInvalid(errors)
    return PreparedWorkflow(file.resolve(), root, workflow, tree)


def submit(prepared: PreparedWorkflow, settings: Settings, store: Store, app: Callable[[], Celery], *,
           sequential: bool = False, no_cache: bool = False) -> tuple[str, bool]:
    """Write the run to Redis and start it; returns (run id, whether anything was enqueued).
    `app` is called only when there is something to enqueue (it may start a local worker)."""
    wf, tree = prepared.workflow, prepared.tree
    memo: dict[str, Any] = {}
    records = {
        t.id: {"task": t.model_dump(), "agent": tree.resolved(t.agent, memo), "goal": wf.goal}
        for t in wf.tasks
    }
    states, outputs = _cached_states(store, wf, records, no_cache)
    pending = [t for t in wf.tasks if t.id not in states]
    for t in pending:
        states[t.id] = {"status": "pending", "type": tree.nodes[t.agent].component_type, "agent": t.agent,
                        "priority": t.priority}
    rest = Workflow(name=wf.name, goal=wf.goal, tasks=[
        t.model_copy(update={"dependencies": [d for d in t.dependencies if d not in outputs]}) for t in pending
    ]) if pending else None
    groups = schedule(rest, sequential) if rest else []
    prio = celery_priorities(wf)
    by_id = {t.id: t for t in wf.tasks}
    waves = [split(group, settings.batch_size) for group in groups]
    # before the run's clock starts: loading Celery takes ~0.1 s and is not the run's time
    celery = app() if waves else None
    run_id = uuid.uuid4().hex[:12]
    meta = {
        "run_id": run_id, "kind": "workflow", "workflow": wf.name, "file": str(prepared.path),
        "tree": str(prepared.tree_root), "mode": "sequential" if sequential else "parallel", "no_cache": no_cache,
        "waves": len(waves), "total": len(wf.tasks), "created": time.time(),
        "batch_task": "agentq.run_batch", "gallery_needed": False,
        "batch_priorities": [[prio[by_id[batch[0]].priority] for batch in wave] for wave in waves],
        "order": [t for group in groups for t in group],
        "state": "running" if waves else "finished",
    }
    if not waves:
        meta["finished"] = meta["created"]
    store.create_run(run_id, meta, states, {t.id: records[t.id] for t in pending}, waves)
    if not waves:
        record_run(store, meta)
    if outputs:
        store.r.hset(store.run_key(run_id, "outputs"), mapping=outputs)
        store.r.expire(store.run_key(run_id, "outputs"), store.run_ttl)
    if celery is not None:
        from workers.canvas import start_run

        start_run(celery, run_id)
    return run_id, bool(waves)


def _cached_states(store: Store, wf: Workflow, records: dict[str, dict[str, Any]], no_cache: bool
                   ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Tasks whose result is cached, found group by group (a key needs its dependencies' outputs)."""
    states: dict[str, dict[str, Any]] = {}
    outputs: dict[str, str] = {}
    if no_cache:
        return states, outputs
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
        for tid, hit in zip(keys, store.r.mget([Store.task_cache_key(k) for k in keys.values()])):
            if hit:
                result = json.loads(hit)
                outputs[tid] = result.pop("output")
                result.pop("transcript", None)
                states[tid] = {"status": "cached", "key": keys[tid], "agent": by_id[tid].agent,
                               "priority": by_id[tid].priority, **result}
    return states, outputs
