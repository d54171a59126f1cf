"""The worker's validation (workers/validation.py) gives the verdict the real AutoGen Studio's
`/api/validate/` gives, on a corpus of valid and invalid components with Studio's own default
gallery among them."""

from __future__ import annotations

import copy
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from producer import embedded
from workers import validation

pytestmark = pytest.mark.integration

REFERENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "reference" / "autogen-studio-components"
MODEL = {
    "provider": "autogen_ext.models.openai.OpenAIChatCompletionClient",
    "component_type": "model",
    "version": 1,
    "component_version": 1,
    "label": "m",
    "config": {"model": "gpt-4o-mini"},
}
MAX3 = {
    "provider": "autogen_agentchat.conditions.MaxMessageTermination",
    "component_type": "termination",
    "version": 1,
    "component_version": 1,
    "label": "max",
    "config": {"max_messages": 3},
}
TEXT = {
    "provider": "autogen_agentchat.conditions.TextMentionTermination",
    "component_type": "termination",
    "version": 1,
    "component_version": 1,
    "label": "text",
    "config": {"text": "DONE"},
}


def _agent(name: str = "writer", model: dict[str, Any] = MODEL) -> dict[str, Any]:
    return {
        "provider": "autogen_agentchat.agents.AssistantAgent",
        "component_type": "agent",
        "version": 1,
        "component_version": 1,
        "label": name,
        "config": {
            "name": name,
            "model_client": model,
            "description": "d",
            "system_message": "Be brief.",
            "reflect_on_tool_use": False,
            "tool_call_summary_format": "{result}",
            "model_client_stream": False,
        },
    }


def _team(
    participants: list[dict[str, Any]],
    termination: dict[str, Any] | None = MAX3,
    provider: str = "autogen_agentchat.teams.RoundRobinGroupChat",
) -> dict[str, Any]:
    config: dict[str, Any] = {"participants": participants}
    if termination:
        config["termination_condition"] = termination
    return {
        "provider": provider,
        "component_type": "team",
        "version": 1,
        "component_version": 1,
        "label": "t",
        "config": config,
    }


def _tool(source: str, name: str = "add") -> dict[str, Any]:
    return {
        "provider": "autogen_core.tools.FunctionTool",
        "component_type": "tool",
        "version": 1,
        "component_version": 1,
        "label": name,
        "config": {
            "source_code": source,
            "name": name,
            "description": "d",
            "global_imports": [],
            "has_cancellation_support": False,
        },
    }


def _with(component: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(component)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[key]
    if value is _DROP:
        node.pop(last, None)
    else:
        node[last] = value
    return out


_DROP = object()


def _gallery() -> list[tuple[str, dict[str, Any]]]:
    """Studio's default gallery, built by Studio's own gallery builder in Studio's venv."""
    python = Path(embedded.studio_binary()).parent / "python"
    code = (
        "import json; from autogenstudio.gallery.builder import create_default_gallery; "
        "print(json.dumps(create_default_gallery().model_dump(mode='json')['components']))"
    )
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return [(f"gallery {kind} {c.get('label')}", c) for kind, items in json.loads(out.stdout).items() for c in items]


def corpus() -> list[tuple[str, dict[str, Any]]]:
    cases = [(f"reference {p.name}", json.loads(p.read_text())) for p in sorted(REFERENCE.glob("*.json"))]
    selector = "autogen_agentchat.teams.SelectorGroupChat"
    cases += [
        ("model", MODEL),
        ("model with a key", _with(MODEL, "config.api_key", "sk-not-real")),
        ("model shorthand provider", _with(MODEL, "provider", "OpenAIChatCompletionClient")),
        ("model unknown to the SDK, no model_info", _with(MODEL, "config.model", "my-own-model")),
        ("model config not a mapping", _with(MODEL, "config", ["gpt-4o-mini"])),
        ("model with a wrong-type field", _with(MODEL, "config.default_headers", ["x"])),
        ("max termination", MAX3),
        ("max termination, text count", _with(MAX3, "config.max_messages", "many")),
        ("max termination, no count", _with(MAX3, "config", {})),
        ("text termination", TEXT),
        ("text termination, number", _with(TEXT, "config.text", 5)),
        (
            "or termination",
            {
                **MAX3,
                "provider": "autogen_agentchat.base.OrTerminationCondition",
                "config": {"conditions": [MAX3, TEXT]},
            },
        ),
        (
            "and termination",
            {
                **MAX3,
                "provider": "autogen_agentchat.base.AndTerminationCondition",
                "config": {"conditions": [MAX3, TEXT]},
            },
        ),
        (
            "and termination, a bad member",
            {
                **MAX3,
                "provider": "autogen_agentchat.base.AndTerminationCondition",
                "config": {"conditions": [MAX3, _with(TEXT, "config", {})]},
            },
        ),
        ("agent", _agent()),
        ("agent with a space in its name", _agent("has space")),
        ("agent without a model", _with(_agent(), "config.model_client", _DROP)),
        ("agent with a broken model", _agent(model=_with(MODEL, "config", {}))),
        ("round robin team", _team([_agent("a"), _agent("b")])),
        ("team with no participants", _team([])),
        ("team with twin participants", _team([_agent("a"), _agent("a")])),
        ("team without termination", _team([_agent()], None)),
        ("selector team", _with(_team([_agent("a"), _agent("b")], provider=selector), "config.model_client", MODEL)),
        ("selector team without its model", _team([_agent("a"), _agent("b")], provider=selector)),
        ("tool", _tool("def add(a: int, b: int) -> int:\n    return a + b\n")),
        ("tool with a syntax error", _tool("def add(a, b) return a + b\n")),
        ("tool whose function is missing", _tool("def other() -> int:\n    return 1\n")),
        ("unknown class in a known module", _with(MAX3, "provider", "autogen_agentchat.conditions.NoSuchTermination")),
        ("a class that is no component", _with(MAX3, "provider", "json.JSONDecoder")),
        ("no component type", _with(MAX3, "component_type", None)),
        ("empty provider", _with(MAX3, "provider", "")),
        ("no config", _with(MAX3, "config", _DROP)),
        ("no provider", _with(MAX3, "provider", _DROP)),
        ("garbage", {"foo": "bar"}),
        ("a package nobody has", _with(MAX3, "provider", "agentq_no_such_package.Thing")),
    ]
    return cases + _gallery()


def _studio_verdict(url: str, component: dict[str, Any]) -> tuple[bool, set[str]]:
    resp = httpx.post(f"{url}/api/validate/", json={"component": component}, timeout=60)
    if resp.status_code == 422:
        return False, {"request"}
    resp.raise_for_status()
    data = resp.json()
    return bool(data["is_valid"]), {e["field"] for e in data["errors"]}


def _local_verdict(component: dict[str, Any]) -> tuple[bool, set[str]] | None:
    try:
        errors = validation.validate(copy.deepcopy(component))
    except validation.Undecided:
        return None
    return not errors, {e.split(":", 1)[0] for e in errors}


def test_local_validation_gives_studios_verdict(studio_url: str) -> None:
    version = httpx.get(f"{studio_url}/api/version", timeout=30).json()["data"]["version"]
    if not validation.same_autogen(version):
        pytest.fail(f"Studio {version} is not known to run the workers' AutoGen: nothing would be validated locally")
    httpx.get(f"{studio_url}/api/teams/", params={"user_id": "parity"}, timeout=30)  # Studio's steady state
    cases = corpus()
    assert len(cases) >= 40
    decided = valid = 0
    mismatches = []
    for name, component in cases:
        local = _local_verdict(component)
        if local is None:
            continue  # the worker asks Studio
        decided += 1
        studio = _studio_verdict(studio_url, component)
        valid += studio[0]
        if local != studio:
            mismatches.append(f"{name}: local {local}, Studio {studio}")
    assert not mismatches, "\n".join(mismatches)
    assert decided >= 40 and 0 < valid < decided, (decided, valid)
    # the rest (a package this worker lacks: web surfers, tools' global imports) go to Studio


def test_local_validation_can_be_turned_off(studio_url: str, tmp_path: Path) -> None:
    """LOCAL_VALIDATION=false: every component is validated by Studio, as before."""
    from tests.conftest import WORKER_ENV, Cli
    from tests.test_studio_outage import _write_tree

    url, redis_proc = embedded.start_redis(tmp_path / "redis")
    worker = embedded.start_worker(
        url,
        concurrency=2,
        name="remote-validation",
        env={**WORKER_ENV, "LOCAL_VALIDATION": "false"},
        log_path=tmp_path / "worker.log",
    )
    try:
        cli = Cli(url, studio_url, f"remote-{uuid.uuid4().hex[:6]}", tmp_path / "cache", studio_url)
        tree = tmp_path / "tree"
        _write_tree(tree, teams=3)
        rc, report, err = cli.sync(tree)
        assert rc == 0, err
        assert report["studio_requests"]["POST /validate/"] == 5  # the model, the agent and three teams
    finally:
        embedded.stop(worker)
        embedded.stop(redis_proc)
