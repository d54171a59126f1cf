"""Workflow files: a goal and tasks with agents, priorities and dependencies. Pure, no I/O.

Two spellings are accepted. A file of this project's design:

    kind: workflow
    name: research
    goal: ...
    tasks: [{id, description, expected_output, agent: {$ref: label}, priority, dependencies, ...}]

or the component-spec spelling, `component_type: workflow` with the same fields under `config`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.core.components import display_name, either, is_group, kind_of, runnable_types, task_problems
from shared.core.endpoints import agents_of, model_specs
from shared.core.errors import ConfigError
from shared.core.graph import find_cycles, waves
from shared.core.tree import Tree


class WorkflowTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = Field(min_length=1)
    expected_output: str = ""
    agent: str  # label of an agent or team in the tree
    priority: int = 0
    dependencies: list[str] = Field(default_factory=list)
    timeout: float | None = Field(default=None, gt=0)
    retries: int | None = Field(default=None, ge=0, le=20)
    cache: bool = True

    @field_validator("agent", mode="before")
    @classmethod
    def _agent_ref(cls, value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"$ref"}:
            return value["$ref"]
        if isinstance(value, dict):
            raise ValueError('expected {"$ref": "<agent or team label>"}')
        return value


class Workflow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    goal: str = ""
    tasks: list[WorkflowTask] = Field(min_length=1)


def _body(doc: dict[str, Any]) -> dict[str, Any]:
    if doc.get("kind") == "workflow":
        return {k: v for k, v in doc.items() if k != "kind"}
    config = doc.get("config")
    body = dict(config) if isinstance(config, dict) else {}
    body.setdefault("name", doc.get("label") or doc.get("name"))
    if "goal" not in body and doc.get("description"):
        body["goal"] = doc["description"]
    return body


def parse_workflow(path: str, doc: dict[str, Any]) -> Workflow | list[ConfigError]:
    prefix = "" if doc.get("kind") == "workflow" else "config."
    try:
        return Workflow.model_validate(_body(doc))
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in err["loc"]).replace(".[", "[")
            message = "required field is missing" if err["type"] == "missing" else err["msg"]
            errors.append(ConfigError(path=path, field=(prefix + loc) or None, message=message))
        return errors


def check_workflow(path: str, wf: Workflow, tree: Tree) -> list[ConfigError]:
    """Errors that must stop a run before anything is enqueued: unknown or duplicate task ids,
    cycles, agents that are missing, not agents or teams, not valid, or without a model client
    that speaks the OpenAI-compatible API."""
    errors: list[ConfigError] = []
    memo: dict[str, Any] = {}
    ids = [t.id for t in wf.tasks]
    seen: set[str] = set()
    for i, task in enumerate(wf.tasks):
        field = f"tasks[{i}]"
        if task.id in seen:
            errors.append(ConfigError(path=path, field=f"{field}.id", message=f"duplicate task id {task.id!r}"))
        seen.add(task.id)
        for j, dep in enumerate(task.dependencies):
            if dep not in ids:
                errors.append(
                    ConfigError(path=path, field=f"{field}.dependencies[{j}]", message=f"unknown task id {dep!r}")
                )
        node = tree.nodes.get(task.agent)
        runnable = runnable_types()  # agents and teams
        if node is None:
            errors.append(
                ConfigError(
                    path=path,
                    field=f"{field}.agent",
                    message=f"no {either(runnable)} labelled {task.agent!r} in the tree",
                )
            )
        elif node.component_type not in runnable:
            errors.append(
                ConfigError(
                    path=path,
                    field=f"{field}.agent",
                    message=f"{task.agent!r} ({node.path}) is a {node.component_type}, not an {either(runnable)}",
                )
            )
        elif task.agent in tree.invalid or task.agent in tree.skipped:
            reason = tree.invalid.get(task.agent) or tree.skipped[task.agent]
            errors.append(
                ConfigError(path=path, field=f"{field}.agent", message=f"agent {task.agent!r} is not usable: {reason}")
            )
        else:
            errors.extend(
                ConfigError(path=path, field=f"{field}.agent", message=f"{task.agent!r} ({node.path}): {problem}")
                for problem in agent_problems(tree.resolved(task.agent, memo))
            )
    deps = {t.id: [d for d in t.dependencies if d in ids] for t in wf.tasks}
    for cycle in find_cycles(deps):
        errors.append(
            ConfigError(path=path, field="tasks", message="dependency cycle: " + " -> ".join(cycle + cycle[:1]))
        )
    return errors


def agent_problems(spec: dict[str, Any]) -> list[str]:
    """Why an agent or team could not answer a task, known before AutoGen loads it: a team without
    participants, a team inside a team (AutoGen 0.5 takes agents only), an AssistantAgent without
    a model client, or a model client that names no model. Each type's own checks are its
    `task_problems` in shared/core/components.py."""
    group = kind_of(spec.get("component_type")) if is_group(spec) else None
    if group is not None and (own := task_problems(spec)):
        return own  # a team without participants
    problems: list[str] = []
    for agent in agents_of(spec):
        if is_group(agent):
            kind = agent.get("component_type")
            problems.append(f"participant {display_name(agent)!r} is a {kind}; teams inside teams are not supported")
        else:
            problems += task_problems(agent, group.member_type if group is not None else None)
    for model in model_specs(spec):
        problems += task_problems(model)
    return problems


def remaining_path(wf: Workflow) -> dict[str, int]:
    """Length of the longest chain of tasks that still depends on each task (itself included)."""
    dependents: dict[str, list[str]] = {t.id: [] for t in wf.tasks}
    for t in wf.tasks:
        for d in t.dependencies:
            dependents[d].append(t.id)
    order = [tid for wave in waves({t.id: t.dependencies for t in wf.tasks}) for tid in wave]
    length: dict[str, int] = {}
    for tid in reversed(order):
        length[tid] = 1 + max((length[d] for d in dependents[tid]), default=0)
    return length


MAX_PATH = 999_999


def rank(priority: int, remaining: int) -> int:
    """Which ready task goes first: higher priority, then the longer chain still behind it."""
    return priority * (MAX_PATH + 1) + min(remaining, MAX_PATH)


@dataclass(frozen=True)
class ReleasePlan:
    """How a run releases its tasks: when a task ends, each of its `dependents` has one fewer open
    input; a task whose count reaches zero is published at once. No waiting on unrelated tasks."""

    dependents: dict[str, list[str]]
    open: dict[str, int]
    ready: list[str]  # nothing to wait for: published when the run starts, critical first
    ranks: dict[str, int]


def release_plan(wf: Workflow, sequential: bool = False) -> ReleasePlan:
    """`wf` holds the tasks still to run, their dependencies on finished tasks already removed.
    Sequential mode chains them in schedule order, so exactly one runs at a time."""
    by_id = {t.id: t for t in wf.tasks}
    rest = remaining_path(wf)
    ranks = {t.id: rank(t.priority, rest[t.id]) for t in wf.tasks}
    if sequential:
        order = [tid for group in schedule(wf, sequential=True) for tid in group]
        chain: dict[str, list[str]] = {a: [b] for a, b in zip(order, order[1:], strict=False)}
        chain[order[-1]] = []
        return ReleasePlan(chain, {tid: 1 for tid in order[1:]}, order[:1], ranks)
    dependents: dict[str, list[str]] = {t.id: [] for t in wf.tasks}
    for t in wf.tasks:
        for d in dict.fromkeys(t.dependencies):
            dependents[d].append(t.id)
    waiting = {t.id: len(set(t.dependencies)) for t in wf.tasks if t.dependencies}
    ready = sorted((tid for tid in by_id if tid not in waiting), key=lambda tid: (-ranks[tid], tid))
    return ReleasePlan(dependents, waiting, ready, ranks)


def schedule(wf: Workflow, sequential: bool = False) -> list[list[str]]:
    """Dependency groups, each ordered critical-first: higher priority, then longer remaining path.
    Sequential mode puts one task per group, in an order that respects dependencies."""
    by_id = {t.id: t for t in wf.tasks}
    rest = remaining_path(wf)

    def rank(tid: str) -> tuple[int, int, str]:
        return (-by_id[tid].priority, -rest[tid], tid)

    groups = [sorted(wave, key=rank) for wave in waves({t.id: t.dependencies for t in wf.tasks})]
    if sequential:
        return [[tid] for group in groups for tid in group]
    return groups


def celery_priorities(wf: Workflow) -> dict[int, int]:
    """Workflow priority -> Redis message priority (0 is the highest on Redis, 9 the lowest)."""
    distinct = sorted({t.priority for t in wf.tasks}, reverse=True)
    return {p: min(9, round(i * 9 / max(1, len(distinct) - 1))) for i, p in enumerate(distinct)}
