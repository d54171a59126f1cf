"""A workflow from a goal and a team size (`producer team`): agents in roles chosen for the size,
independent research first and review last. Pure: it returns documents, the CLI writes them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.core.components import is_model_type

if TYPE_CHECKING:
    from shared.core.tree import Tree


@dataclass(frozen=True)
class Role:
    name: str
    brief: str  # the agent's system message
    task: str  # what its task asks for


RESEARCHER = Role(
    "researcher",
    "You research: find facts, figures and sources, and report them plainly.",
    "Research the goal: collect the facts, figures and sources it needs",
)
ANALYST = Role(
    "analyst",
    "You analyse: weigh the research, find what matters and what is missing.",
    "Analyse the research: what it shows, what matters most, what is missing",
)
WRITER = Role(
    "writer",
    "You write: turn analysis into a clear, well-structured text.",
    "Write the deliverable for the goal from the analysis",
)
CRITIC = Role(
    "critic",
    "You review: find errors, gaps and unclear passages, and say how to fix them.",
    "Review the draft: list its errors, gaps and unclear passages, with fixes",
)
EDITOR = Role(
    "editor", "You edit: apply the review and deliver the final text.", "Apply the review and deliver the final text"
)
GENERALIST = Role(
    "generalist",
    "You research, analyse and write, alone, carefully.",
    "Research the goal, analyse what you find, and write the deliverable",
)


def roles_for(size: int) -> list[Role]:
    """1: one generalist; 3: researcher, analyst, writer; 5: and a critic and an editor; larger
    teams repeat the research role, in parallel."""
    if size < 1:
        raise ValueError("a team has at least one agent")
    if size == 1:
        return [GENERALIST]
    if size == 2:
        return [RESEARCHER, WRITER]
    if size <= 4:
        return [RESEARCHER, ANALYST, WRITER, CRITIC][:size]
    return [RESEARCHER] * (size - 4) + [ANALYST, WRITER, CRITIC, EDITOR]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "team"


def model_problem(tree: Tree, label: str, where: str = "the tree") -> str | None:
    """Why `label` cannot be the team's model (None: it can): it must be the label of a model
    component in the tree, not of an agent or anything else."""
    node = tree.nodes.get(label)
    if node is None:
        models = sorted(lbl for lbl, n in tree.nodes.items() if is_model_type(n.component_type))
        known = f"its models: {', '.join(map(repr, models[:8]))}" if models else "it has no model component"
        return f"--model {label!r}: no model labelled so in {where} ({known})"
    if not is_model_type(node.component_type):
        return f"--model {label!r}: that is the {node.component_type} in {node.path}, not a model component"
    return None


def team_workflow(
    goal: str, size: int, model: str, name: str | None = None
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(agent label -> component, workflow document). Agents reference the model label `model`:
    the researchers' tasks first, side by side; each later task after the one before it (the
    first after every research task)."""
    name = name or slug(goal)
    roles = roles_for(size)
    researchers = sum(1 for r in roles if r is RESEARCHER)
    agents: dict[str, dict[str, Any]] = {}
    tasks: list[dict[str, Any]] = []
    research_ids: list[str] = []
    previous: list[str] = []
    for role in roles:
        part = len(research_ids) + 1 if role is RESEARCHER and researchers > 1 else None
        ident = role.name if part is None else f"{role.name}_{part}"
        label = f"{name}-{ident.replace('_', '-')}"
        agents[label] = _agent(label, ident, role, model)
        task_id = ident.replace("_", "-")
        if role is RESEARCHER:
            tasks.append(_research_task(task_id, role, label, part, researchers))
            research_ids.append(task_id)
            continue
        tasks.append(_task(task_id, role, label, previous or research_ids))
        previous = [task_id]
    workflow = {"kind": "workflow", "name": name, "goal": goal, "tasks": tasks}
    return agents, workflow


def _research_task(task_id: str, role: Role, label: str, part: int | None, researchers: int) -> dict[str, Any]:
    """A research task; where there are several, the part of the research it is."""
    angle = "" if part is None else f" (part {part} of {researchers}: a different angle from the others)"
    return {"id": task_id, "description": role.task + angle + ".", "agent": {"$ref": label}, "priority": 8}


def _task(task_id: str, role: Role, label: str, deps: list[str]) -> dict[str, Any]:
    task: dict[str, Any] = {"id": task_id, "description": role.task + ".", "agent": {"$ref": label}, "priority": 5}
    if deps:
        task["dependencies"] = list(deps)
    return task


def _component(
    provider: str, component_type: str, label: str, config: dict[str, Any], description: str | None = None
) -> dict[str, Any]:
    """A component document, its keys in the order the tree's files have them."""
    doc: dict[str, Any] = {
        "provider": provider,
        "component_type": component_type,
        "version": 1,
        "component_version": 1,
        "label": label,
    }
    if description is not None:
        doc["description"] = description
    doc["config"] = config
    return doc


def _agent(label: str, ident: str, role: Role, model: str) -> dict[str, Any]:
    config = {
        "name": ident,
        "description": f"The team's {role.name}",
        "system_message": role.brief,
        "model_client": {"$ref": model},
        "model_client_stream": False,
        "reflect_on_tool_use": False,
        "tool_call_summary_format": "{result}",
    }
    return _component("autogen_agentchat.agents.AssistantAgent", "agent", label, config, f"The team's {role.name}")


COMPLEXITIES = ("simple", "medium", "complex")
DETAIL = (
    " Be thorough: state your assumptions, cover at least three distinct aspects of the goal, give a"
    " concrete example for each, note the risks and open questions, and end with a short summary."
)


def with_complexity(
    agents: dict[str, dict[str, Any]], workflow: dict[str, Any], level: str, model: str
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The team workflow at a task complexity (`producer bench workflow --complexity`):
    - simple: every task alone (no dependencies), short prompts;
    - medium: the team workflow as built;
    - complex: each task after every earlier one (more inputs in its prompt), longer prompts, and
      every task after research run by a two-agent round-robin team with a reviewer (more turns).
    Returns components (agents, and for complex the reviewer and teams) and the workflow."""
    if level not in COMPLEXITIES:
        raise ValueError(f"complexity {level!r}: expected one of {', '.join(COMPLEXITIES)}")
    tasks = [dict(t) for t in workflow["tasks"]]
    components = dict(agents)
    if level == "simple":
        for task in tasks:
            task.pop("dependencies", None)
    elif level == "complex":
        _complex(components, tasks, workflow["name"], model)
    return components, {**workflow, "name": f"{workflow['name']}-{level}", "tasks": tasks}


def _complex(components: dict[str, dict[str, Any]], tasks: list[dict[str, Any]], name: str, model: str) -> None:
    """Longer prompts; each task after research after every earlier one, run by its agent paired
    with a reviewer (the reviewer, the termination and the pairs added to `components`)."""
    reviewer = f"{name}-reviewer"
    components[reviewer] = _agent(reviewer, "reviewer", CRITIC, model)
    stop = f"{name}-stop-after-4"
    components[stop] = _component(
        "autogen_agentchat.conditions.MaxMessageTermination",
        "termination",
        stop,
        {"max_messages": 4, "include_agent_event": False},
    )
    for i, task in enumerate(tasks):
        task["description"] += DETAIL
        if i == 0 or "dependencies" not in task:
            continue
        task["dependencies"] = [t["id"] for t in tasks[:i]]
        agent = task["agent"]["$ref"]
        team = f"{agent}-pair"
        components[team] = _pair(team, agent, reviewer, stop)
        task["agent"] = {"$ref": team}


def _pair(team: str, agent: str, reviewer: str, stop: str) -> dict[str, Any]:
    """A round-robin team of the agent and the reviewer, stopped by `stop`."""
    config = {
        "participants": [{"$ref": agent}, {"$ref": reviewer}],
        "termination_condition": {"$ref": stop},
        "emit_team_events": False,
    }
    team_type = "autogen_agentchat.teams.RoundRobinGroupChat"
    return _component(team_type, "team", team, config, f"{agent} with a reviewer, taking turns")
