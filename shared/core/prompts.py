"""What a workflow task sends to its model, and the task's cache key. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shared.core.hashing import SCHEMA_VERSION, canonical_json, sha256_hex

WORKFLOW_SCHEMA = SCHEMA_VERSION + "/workflow-1"


def task_prompt(goal: str, task: dict[str, Any], inputs: Iterable[tuple[str, str]]) -> str:
    parts = []
    if goal:
        parts.append(f"Goal: {goal}")
    parts.append(f"Task: {task['description']}")
    if task.get("expected_output"):
        parts.append(f"Expected output: {task['expected_output']}")
    inputs = list(inputs)
    if inputs:
        parts.append("Outputs of the tasks this one depends on:")
        parts.extend(f"### {tid}\n{output}" for tid, output in inputs)
    return "\n\n".join(parts)


def task_key(
    goal: str,
    task: dict[str, Any],
    agent_spec: dict[str, Any],
    inputs: Iterable[tuple[str, str, str]],
    agent_key: str = "",
) -> str:
    """Cache key of a task run. `agent_spec` is the agent/team with its model inlined and `${VAR}`
    NOT resolved: secrets stay out of the key, their names and presence are in it. `agent_key`:
    its node's key, which holds the values of its `${VAR}`s that are no secret (a task run under
    another `${MODEL}` is another run). `inputs` are (task id, dependency key, dependency output)."""
    static = {k: task.get(k) for k in ("id", "description", "expected_output")}
    deps = [(tid, key, sha256_hex(output)) for tid, key, output in sorted(inputs)]
    spec = canonical_json(agent_spec)
    return sha256_hex(WORKFLOW_SCHEMA, goal, canonical_json(static), spec, canonical_json(deps), agent_key)
