"""The workflow's pure core: file validation, scheduling, prompts, keys, termination, Retry-After."""

from __future__ import annotations

import email.utils
import time

import pytest

from shared.endpoints import endpoint_from_component
from shared.llm import retry_after_seconds
from shared.prompts import agent_messages, task_key, task_prompt
from shared.tree import build_tree
from shared.workflow import (
    Workflow,
    celery_priorities,
    check_workflow,
    parse_workflow,
    remaining_path,
    schedule,
)
from workers.workflow_exec import termination_limits


def wf(*tasks: dict) -> Workflow:
    return Workflow.model_validate({"name": "w", "goal": "g", "tasks": [
        {"description": t["id"], "agent": "a", **t} for t in tasks]})


OPENAI = "autogen_ext.models.openai.OpenAIChatCompletionClient"


def tree_with(**extra: dict):
    """A model `m`, an agent `a` using it, a team `t` of `a`, and any `extra` components by label."""
    docs = {
        "m.yaml": {"provider": OPENAI, "component_type": "model", "label": "m", "config": {"model": "gpt-4o-mini"}},
        "a.yaml": {"provider": "p.Agent", "component_type": "agent", "label": "a", "config": {"model_client": {"$ref": "m"}}},
        "t.yaml": {"provider": "p.Team", "component_type": "team", "label": "t", "config": {"participants": [{"$ref": "a"}]}},
    }
    docs.update({f"{label}.yaml": {"provider": "p.X", "label": label, **doc} for label, doc in extra.items()})
    return build_tree(docs, set())


def test_both_spellings_parse_to_the_same_workflow() -> None:
    task = {"id": "t", "description": "d", "expected_output": "e", "agent": {"$ref": "a"}, "priority": 3}
    mine = parse_workflow("w.yaml", {"kind": "workflow", "name": "w", "goal": "g", "tasks": [task]})
    spec = parse_workflow("w.yaml", {"provider": "agentq.Workflow", "component_type": "workflow", "label": "w",
                                     "config": {"goal": "g", "tasks": [task]}})
    assert isinstance(mine, Workflow) and mine == spec
    assert mine.tasks[0].agent == "a" and mine.tasks[0].cache is True


@pytest.mark.parametrize("doc, field, text", [
    ({"kind": "workflow", "name": "w", "tasks": []}, "tasks", "at least 1"),
    ({"kind": "workflow", "name": "w", "tasks": [{"id": "t", "agent": "a"}]}, "tasks[0].description", "required"),
    ({"kind": "workflow", "name": "w", "tasks": [{"id": "t", "description": "d", "agent": "a", "priority": "high"}]},
     "tasks[0].priority", "integer"),
    ({"kind": "workflow", "name": "w", "tasks": [{"id": "t", "description": "d", "agent": "a", "colour": 1}]},
     "tasks[0].colour", "Extra inputs"),
    ({"component_type": "workflow", "label": "w", "config": {"tasks": [{"id": "t", "description": "d", "agent": "a", "timeout": -1}]}},
     "config.tasks[0].timeout", "greater than 0"),
])
def test_invalid_fields_are_named(doc: dict, field: str, text: str) -> None:
    errors = parse_workflow("flows/w.yaml", doc)
    assert isinstance(errors, list)
    assert any(e.field == field and text in e.message and e.path == "flows/w.yaml" for e in errors), errors


def test_check_reports_unknown_ids_cycles_and_bad_agents() -> None:
    tree = tree_with()
    ok = wf({"id": "x"}, {"id": "y", "agent": "t", "dependencies": ["x"]})
    assert check_workflow("w.yaml", ok, tree) == []
    bad = wf({"id": "x", "dependencies": ["zz"]}, {"id": "y", "agent": "m"}, {"id": "z", "agent": "nobody"},
             {"id": "p", "dependencies": ["q"]}, {"id": "q", "dependencies": ["p"]}, {"id": "x"})
    text = "\n".join(str(e) for e in check_workflow("w.yaml", bad, tree))
    assert "tasks[0].dependencies[0]: unknown task id 'zz'" in text
    assert "tasks[1].agent: 'm' (m.yaml) is a model" in text
    assert "tasks[2].agent: no agent or team labelled 'nobody'" in text
    assert "dependency cycle: p -> q -> p" in text
    assert "tasks[5].id: duplicate task id 'x'" in text


def test_check_refuses_agents_that_cannot_answer_before_anything_runs() -> None:
    claude = {"provider": "autogen_ext.models.anthropic.AnthropicChatCompletionClient", "label": "claude",
              "config": {"model": "claude-3-5-sonnet"}}
    tree = tree_with(
        mute={"component_type": "agent", "config": {"name": "mute"}},
        poet={"component_type": "agent", "config": {"model_client": {"component_type": "model", **claude}}},
        nomodel={"component_type": "agent", "config": {"model_client": {"component_type": "model", "provider": OPENAI, "config": {}}}},
        nested={"component_type": "team", "config": {"participants": [{"$ref": "a"}, {"$ref": "t"}]}},
        empty={"component_type": "team", "config": {"participants": []}},
    )
    bad = wf(*({"id": f"x{i}", "agent": label} for i, label in enumerate(["mute", "poet", "nomodel", "nested", "empty"])))
    text = "\n".join(str(e) for e in check_workflow("w.yaml", bad, tree))
    assert "tasks[0].agent: 'mute' (mute.yaml): agent 'mute' has no model_client" in text
    assert "tasks[1].agent: 'poet' (poet.yaml): agent 'poet': model client 'claude' is a " \
           "autogen_ext.models.anthropic.AnthropicChatCompletionClient, which does not speak" in text
    assert "tasks[2].agent: 'nomodel' (nomodel.yaml): agent 'nomodel': model client '(inline)' has no config.model" in text
    assert "tasks[3].agent: 'nested' (nested.yaml): participant 't' is a team" in text
    assert "tasks[4].agent: 'empty' (empty.yaml): the team has no participants" in text
    assert check_workflow("w.yaml", wf({"id": "ok", "agent": "t"}), tree) == []


def test_schedule_orders_by_priority_then_critical_path_and_respects_dependencies() -> None:
    w = wf({"id": "short", "priority": 1}, {"id": "long", "priority": 1}, {"id": "urgent", "priority": 9},
           {"id": "next", "dependencies": ["long"]}, {"id": "last", "dependencies": ["next"]})
    assert remaining_path(w) == {"short": 1, "long": 3, "urgent": 1, "next": 2, "last": 1}
    assert schedule(w) == [["urgent", "long", "short"], ["next"], ["last"]]
    seq = schedule(w, sequential=True)
    assert all(len(g) == 1 for g in seq)
    order = [g[0] for g in seq]
    assert order.index("long") < order.index("next") < order.index("last")
    assert sorted(order) == sorted(t.id for t in w.tasks)


def test_celery_priorities_map_higher_first_onto_redis_range() -> None:
    w = wf({"id": "a", "priority": 100}, {"id": "b", "priority": 0}, {"id": "c", "priority": -5})
    p = celery_priorities(w)
    assert p[100] == 0 and p[-5] == 9 and p[100] < p[0] < p[-5]


def test_prompt_contains_task_expected_output_and_inputs() -> None:
    prompt = task_prompt("the goal", {"description": "do X", "expected_output": "a list"}, [("a", "out-a"), ("b", "out-b")])
    for text in ("Goal: the goal", "Task: do X", "Expected output: a list", "### a\nout-a", "### b\nout-b"):
        assert text in prompt
    msgs = agent_messages("sys", "P", [("alice", "hi"), ("bob", "yo")], "bob")
    assert msgs == [{"role": "system", "content": "sys"}, {"role": "user", "content": "P"},
                    {"role": "user", "content": "alice: hi"}, {"role": "assistant", "content": "yo"}]


def test_task_key_covers_spec_agent_and_inputs_but_not_secret_values() -> None:
    task = {"id": "t", "description": "d", "expected_output": "e", "priority": 1}
    agent = {"config": {"model_client": {"config": {"api_key": "${KEY}"}}}}
    base = task_key("g", task, agent, [("a", "k1", "out")])
    assert base == task_key("g", {**task, "priority": 7}, agent, [("a", "k1", "out")])  # priority is scheduling only
    assert base != task_key("g", {**task, "description": "d2"}, agent, [("a", "k1", "out")])
    assert base != task_key("g", task, agent, [("a", "k1", "other output")])
    assert base != task_key("g", task, agent, [("a", "k2", "out")])
    assert base != task_key("g", task, {"config": {"model_client": {"config": {"api_key": "${OTHER}"}}}}, [("a", "k1", "out")])


def test_termination_conditions() -> None:
    mx = {"provider": "autogen_agentchat.conditions.MaxMessageTermination", "config": {"max_messages": 5}}
    tx = {"provider": "autogen_agentchat.conditions.TextMentionTermination", "config": {"text": "DONE"}}
    both = {"provider": "autogen_agentchat.base.OrTerminationCondition", "config": {"conditions": [mx, tx]}}
    assert termination_limits(mx) == (5, []) and termination_limits(tx) == (None, ["DONE"])
    assert termination_limits(both) == (5, ["DONE"]) and termination_limits(None) == (None, [])


def test_retry_after_seconds_and_dates() -> None:
    assert retry_after_seconds("2") == 2.0 and retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    later = email.utils.formatdate(time.time() + 5, usegmt=True)
    assert 3.0 <= retry_after_seconds(later) <= 5.0
    assert retry_after_seconds("100000") == 60.0  # capped


def test_ollama_and_request_params_from_model_component() -> None:
    ollama = {"provider": "autogen_ext.models.ollama.OllamaChatCompletionClient",
              "config": {"model": "llama3.2", "host": "127.0.0.1:11434", "options": {"temperature": 0.1}}}
    e = endpoint_from_component(ollama, {"OPENAI_API_KEY": "not-for-ollama"}, 4)
    assert (e.base_url, e.model, e.api_key, e.params) == ("http://127.0.0.1:11434/v1", "llama3.2", None, {"temperature": 0.1})
    assert endpoint_from_component({"provider": ollama["provider"], "config": {"model": "x"}}, {}, 4).base_url == "http://localhost:11434/v1"
    openai = {"provider": OPENAI, "config": {"model": "gpt-4o", "temperature": 0.2, "max_tokens": 50, "seed": 7,
                                             "organization": "org-1", "default_headers": {"X-Team": "a"}, "model_info": {}}}
    e = endpoint_from_component(openai, {}, 4)
    assert e.params == {"temperature": 0.2, "max_tokens": 50, "seed": 7}
    assert e.headers == {"OpenAI-Organization": "org-1", "X-Team": "a"}
    # a client of another protocol is refused, unless it is pointed at an OpenAI-compatible base_url
    with pytest.raises(ValueError, match="does not speak"):
        endpoint_from_component({"provider": "x.AzureOpenAIChatCompletionClient", "config": {"model": "m"}}, {}, 4)
    assert endpoint_from_component({"provider": "x.Custom", "config": {"model": "m", "base_url": "http://127.0.0.1:9/v1"}}, {}, 4)


def test_endpoint_from_model_component() -> None:
    model = {"label": "m", "max_concurrency": 3, "config": {"model": "llama", "base_url": "http://127.0.0.1:1/v1", "api_key": "k"}}
    e = endpoint_from_component(model, {}, 8)
    assert (e.base_url, e.model, e.api_key, e.max_concurrency) == ("http://127.0.0.1:1/v1", "llama", "k", 3)
    e2 = endpoint_from_component({"config": {"model": "gpt-4o"}}, {"OPENAI_API_KEY": "env-key"}, 8)
    assert e2.base_url == "https://api.openai.com/v1" and e2.api_key == "env-key" and e2.max_concurrency == 8
    with pytest.raises(ValueError):
        endpoint_from_component({"label": "x", "config": {}}, {}, 8)


def test_chat_honours_retry_after_and_does_not_retry_4xx() -> None:
    import asyncio

    from producer.standin_llm import ThreadedStandIn
    from shared.endpoints import ModelEndpoint
    from shared.llm import EndpointError, chat
    from shared.model_http import model_http_client

    server = ThreadedStandIn()
    state = server.state
    endpoint = ModelEndpoint(server.url, "m", None, 1)
    causes: list[str] = []

    async def call(retries: int) -> float:
        async with model_http_client(10, 4) as http:  # what the workers use
            t0 = time.monotonic()
            await chat(http, endpoint, [{"role": "user", "content": "hi"}], retries=retries, backoff=0.01, on_retry=causes.append)
            return time.monotonic() - t0

    try:
        state.control.update(fail_every=2, fail_status=429, retry_after=0.4)
        asyncio.run(call(0))  # request 1 answers
        assert asyncio.run(call(3)) >= 0.4  # request 2 is a 429: Retry-After is waited out, request 3 answers
        assert causes == ["rate_limited"] and [q["status"] for q in state.requests] == [200, 429, 200]

        state.control.update(fail_every=1, fail_status=400)
        with pytest.raises(EndpointError, match="answered 400"):
            asyncio.run(call(5))
        assert len(state.requests) == 4  # no retry on a 4xx

        state.control.update(fail_status=503)
        with pytest.raises(EndpointError, match="answered 503"):
            asyncio.run(call(2))
        assert len(state.requests) == 7 and causes[-2:] == ["server_error", "server_error"]
    finally:
        server.stop()
