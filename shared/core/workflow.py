"""Workflow files: a goal and tasks with agents, priorities and dependencies. Pure, no I/O.

Two spellings are accepted. A file of this project's design:

    kind: workflow
    name: research
    goal: ...
    tasks: [{id, description, expected_output, agent: {$ref: label}, priority, dependencies, ...}]

or the component-spec spelling, `component_type: workflow` with the same fields under `config`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails, PydanticCustomError

from shared.core.components import (
    a_kind,
    display_name,
    either,
    is_group,
    is_user_proxy,
    kind_of,
    runnable_types,
    task_problems,
)
from shared.core.endpoints import agents_of, model_specs, placed_components
from shared.core.errors import ConfigError, error_message
from shared.core.graph import dependents_of, find_cycles, waves
from shared.core.tree import Tree, broken_file_named

MAX_PRIORITY = 1_000_000
ID = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)  # ASCII: a task id names Redis keys and result files


class WorkflowTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    description: str = Field(min_length=1)
    expected_output: str = ""
    agent: str  # label of an agent or team in the tree
    # exact as a rank (priority x 10^6 + path, a Redis score, a double) and written as a number
    priority: int = Field(default=0, ge=-MAX_PRIORITY, le=MAX_PRIORITY, strict=True)
    dependencies: list[str] = Field(default_factory=list)
    timeout: float | None = Field(default=None, gt=0)
    retries: int | None = Field(default=None, ge=0, le=20)
    cache: bool = True

    @field_validator("id")
    @classmethod
    def _named(cls, value: str) -> str:
        if not ID.fullmatch(value):
            raise PydanticCustomError(
                "task_id", "may hold only ASCII letters, digits, '_', '.' and '-' (it names keys and files)"
            )
        return value

    @field_validator("description")
    @classmethod
    def _said(cls, value: str) -> str:
        if not value.strip():
            raise PydanticCustomError("blank", "is blank: say what the task is to do")
        return value

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
    return _component_body(doc)


def _component_body(doc: dict[str, Any]) -> dict[str, Any]:
    """A workflow written as a component: its config, named by its label, its goal its description."""
    config = doc.get("config")
    body = dict(config) if isinstance(config, dict) else {}
    body.setdefault("name", doc.get("label") or doc.get("name"))
    if "goal" not in body and doc.get("description"):
        body["goal"] = doc["description"]
    return body


def parse_workflow(path: str, doc: dict[str, Any]) -> Workflow | list[ConfigError]:
    if "kind" in doc and doc["kind"] != "workflow":  # else read as a component, and said as one
        return [ConfigError(path=path, field="kind", message=f"expected 'workflow', found {doc['kind']!r}")]
    prefix = "" if doc.get("kind") == "workflow" else "config."
    try:
        return Workflow.model_validate(_body(doc))
    except ValidationError as exc:
        return [_validation_error(path, prefix, err) for err in exc.errors()]


def _validation_error(path: str, prefix: str, err: ErrorDetails) -> ConfigError:
    """One of pydantic's errors, its location written as a field path (`config.tasks[0].id`)."""
    loc = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in err["loc"]).replace(".[", "[")
    return ConfigError(path=path, field=(prefix + loc) or None, message=error_message(err))


def check_workflow(path: str, wf: Workflow, tree: Tree, tree_name: str = "the tree") -> list[ConfigError]:
    """Errors that must stop a run before anything is enqueued: unknown or duplicate task ids,
    cycles, agents that are missing (from the tree `tree_name` says), not agents or teams, not
    valid, or without a model client that speaks the OpenAI-compatible API."""
    memo: dict[str, Any] = {}
    ids = [t.id for t in wf.tasks]
    seen: set[str] = set()
    problems: list[tuple[str, str]] = []  # (field, message)
    for i, task in enumerate(wf.tasks):
        problems += _task_problems(f"tasks[{i}]", task, ids, seen, (tree, tree_name), memo)
    problems += [("tasks", message) for message in _cycles(wf, ids)]
    return [ConfigError(path=path, field=field, message=message) for field, message in problems]


def _cycles(wf: Workflow, ids: list[str]) -> list[str]:
    """A line per dependency cycle, unknown task ids left out."""
    deps = {t.id: [d for d in t.dependencies if d in ids] for t in wf.tasks}
    return ["dependency cycle: " + " -> ".join(cycle + cycle[:1]) for cycle in find_cycles(deps)]


def _task_problems(
    field: str, task: WorkflowTask, ids: list[str], seen: set[str], tree: tuple[Tree, str], memo: dict[str, Any]
) -> list[tuple[str, str]]:
    """(field, message) of what is wrong with one task: its id taken (`seen` the ids before it),
    a dependency unknown or named twice (its output would go into the prompt twice), its agent."""
    problems = [(f"{field}.id", f"duplicate task id {task.id!r}")] if task.id in seen else []
    seen.add(task.id)
    problems += [
        (f"{field}.dependencies[{j}]", f"unknown task id {dep!r}")
        for j, dep in enumerate(task.dependencies)
        if dep not in ids
    ]
    problems += [
        (f"{field}.dependencies[{j}]", f"{dep!r} is named twice")
        for j, dep in enumerate(task.dependencies)
        if dep in task.dependencies[:j]
    ]
    problems += [(f"{field}.agent", message) for message in _agent_problems(task.agent, *tree, memo)]
    return problems


def _agent_problems(label: str, tree: Tree, tree_name: str, memo: dict[str, Any]) -> list[str]:
    """Why the component a task names cannot run it: missing, not an agent or team, not usable,
    or (as agent_problems finds) unable to answer."""
    node = tree.nodes.get(label)
    runnable = runnable_types()  # agents and teams
    if node is None:
        return [f"no {either(runnable)} labelled {label!r} in {tree_name}{broken_file_named(label, tree.broken_files)}"]
    if node.component_type not in runnable:
        return [f"{label!r} ({node.path}) is {a_kind(node.component_type)}, not an {either(runnable)}"]
    if label in tree.invalid or label in tree.skipped:
        reason = tree.invalid.get(label) or f"{tree.skipped[label]} ({tree.why_invalid(label)})"
        return [f"agent {label!r} is not usable: {reason}"]
    return [f"{label!r} ({node.path}): {problem}" for problem in agent_problems(tree.resolved(label, memo))]


def agent_problems(spec: dict[str, Any]) -> list[str]:
    """Why an agent or team could not answer a task, known before AutoGen loads it: a team without
    participants, a team inside a team (AutoGen 0.5 takes agents only), an AssistantAgent without
    a model client, or a model client that names no model. Each type's own checks are its
    `task_problems` in shared/core/components.py."""
    group = kind_of(spec.get("component_type")) if is_group(spec) else None
    if group is not None and (own := task_problems(spec)):
        return own  # a team without participants
    return _members_problems(spec, group.member_type if group is not None else None)


def _members_problems(spec: dict[str, Any], member_type: str | None) -> list[str]:
    """What is wrong with the agents that answer for `spec` (checked as `member_type`) and its model clients."""
    problems = [p for agent in agents_of(spec) for p in _participant_problems(agent, member_type)]
    # one further in (a SocietyOfMindAgent's team) would wait on the worker's input() all the same
    problems += [p for _, c in placed_components(spec) if is_user_proxy(c) for p in task_problems(c, "agent")]
    problems += [p for model in model_specs(spec) for p in task_problems(model)]
    return list(dict.fromkeys(problems))  # a model two agents share is said once


def _participant_problems(agent: Mapping[str, Any], member_type: str | None) -> list[str]:
    if is_group(agent):
        kind = agent.get("component_type")
        return [f"participant {display_name(agent)!r} is a {kind}; teams inside teams are not supported"]
    return task_problems(agent, member_type)


def remaining_path(wf: Workflow) -> dict[str, int]:
    """Length of the longest chain of tasks that still depends on each task (itself included)."""
    dependents = _dependents(wf)
    order = [tid for wave in waves({t.id: t.dependencies for t in wf.tasks}) for tid in wave]
    length: dict[str, int] = {}
    for tid in reversed(order):
        length[tid] = 1 + max((length[d] for d in dependents[tid]), default=0)
    return length


def _dependents(wf: Workflow) -> dict[str, list[str]]:
    """Each task's dependents, in task order, each once (a dependency may be listed twice)."""
    return dependents_of({t.id: t.dependencies for t in wf.tasks})


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
    rest = remaining_path(wf)
    ranks = {t.id: rank(t.priority, rest[t.id]) for t in wf.tasks}
    if sequential:
        return _chained(wf, ranks)
    waiting = {t.id: len(set(t.dependencies)) for t in wf.tasks if t.dependencies}
    return ReleasePlan(_dependents(wf), waiting, _ready(wf, waiting, ranks), ranks)


def _ready(wf: Workflow, waiting: dict[str, int], ranks: dict[str, int]) -> list[str]:
    """The tasks with no input to wait for, critical first."""
    ids = dict.fromkeys(t.id for t in wf.tasks)
    return sorted((tid for tid in ids if tid not in waiting), key=lambda tid: (-ranks[tid], tid))


def _chained(wf: Workflow, ranks: dict[str, int]) -> ReleasePlan:
    """Each task released by the one before it in schedule order: one at a time."""
    order = [tid for group in schedule(wf, sequential=True) for tid in group]
    chain: dict[str, list[str]] = {a: [b] for a, b in zip(order, order[1:], strict=False)}
    chain[order[-1]] = []
    return ReleasePlan(chain, {tid: 1 for tid in order[1:]}, order[:1], ranks)


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
