"""Generate large config trees for benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

MODEL = {
    "provider": "autogen_ext.models.openai.OpenAIChatCompletionClient",
    "component_type": "model",
    "version": 1,
    "component_version": 1,
    "config": {"model": "gpt-4o-mini", "api_key": "${BENCH_KEY:-not-a-key}"},
}
AGENT_CONFIG = {
    "description": "bench agent",
    "system_message": "Be brief.",
    "reflect_on_tool_use": False,
    "tool_call_summary_format": "{result}",
    "model_client_stream": False,
    "metadata": {},
}


def _write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))


def mixed_tree(root: Path, total: int = 10_000) -> None:
    """`total` files of every kind, with references: models, tools, terminations (plain and
    combined), agents and teams."""
    # the shares of a 10,000-file tree, at any size: a team needs two agents and an or-termination,
    # an or-termination two plain ones
    f = total / 10_000
    counts = {"models": max(1, round(20 * f)), "teams": max(1, round(10 * f)), "tools": round(3000 * f)}
    counts["agents"] = max(counts["teams"] + 10, round(70 * f))
    rest = total - sum(counts.values())
    counts["combined"] = min(round(1900 * f), rest // 3)
    counts["terminations"] = rest - counts["combined"]
    for i in range(counts["models"]):
        _write(root / "models" / f"m{i}.json", {**MODEL, "label": f"model-{i}"})
    for i in range(counts["tools"]):
        _write(
            root / "tools" / f"t{i}.json",
            {
                "provider": "autogen_core.tools.FunctionTool",
                "component_type": "tool",
                "version": 1,
                "label": f"tool-{i}",
                "config": {
                    "name": f"f{i}",
                    "description": "adds",
                    "global_imports": [],
                    "has_cancellation_support": False,
                    "source_code": f"def f{i}(a: int, b: int) -> int:\n    return a + b + {i}\n",
                },
            },
        )
    for i in range(counts["terminations"]):
        _write(
            root / "terminations" / f"max{i}.json",
            {
                "provider": "autogen_agentchat.conditions.MaxMessageTermination",
                "component_type": "termination",
                "version": 1,
                "label": f"max-{i}",
                "config": {"max_messages": 5 + i, "include_agent_event": False},
            },
        )
    for i in range(counts["combined"]):
        _write(
            root / "terminations" / f"or{i}.json",
            {
                "provider": "autogen_agentchat.base.OrTerminationCondition",
                "component_type": "termination",
                "version": 1,
                "label": f"or-{i}",
                "config": {"conditions": [{"$ref": f"max-{2 * i}"}, {"$ref": f"max-{2 * i + 1}"}]},
            },
        )
    for i in range(counts["agents"]):
        _write(root / "agents" / f"a{i}.json", agent(f"agent-{i}", {"$ref": f"model-{i % counts['models']}"}))
    for i in range(counts["teams"]):
        _write(
            root / "teams" / f"team{i}.json",
            team(f"team-{i}", [{"$ref": f"agent-{i}"}, {"$ref": f"agent-{i + 10}"}], {"$ref": f"or-{i}"}),
        )


def agent(label: str, model_client: dict) -> dict:
    return {
        "provider": "autogen_agentchat.agents.AssistantAgent",
        "component_type": "agent",
        "version": 1,
        "component_version": 1,
        "label": label,
        "config": {"name": label.replace("-", "_"), **AGENT_CONFIG, "model_client": model_client},
    }


def team(label: str, participants: list, termination: dict | None = None) -> dict:
    config: dict = {"participants": participants, "emit_team_events": False}
    if termination:
        config["termination_condition"] = termination
    return {
        "provider": "autogen_agentchat.teams.RoundRobinGroupChat",
        "component_type": "team",
        "version": 1,
        "component_version": 1,
        "label": label,
        "config": config,
    }


def teams_tree(root: Path, teams: int) -> list[dict]:
    """One model, and `teams` teams each embedding their own agent (inline). Returns the team docs."""
    _write(root / "model.json", {**MODEL, "label": "model"})
    docs = []
    for i in range(teams):
        doc = team(f"team-{i:04}", [agent(f"member-{i}", {"$ref": "model"})])
        _write(root / "teams" / f"team{i:04}.json", doc)
        docs.append(doc)
    return docs
