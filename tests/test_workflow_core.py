"""The workflow's pure core: file validation, scheduling and release, prompts, keys, providers, retries."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import pytest

from shared.core.endpoints import limit_key, max_concurrency, missing_packages, model_specs
from shared.core.prompts import task_key, task_prompt
from shared.core.tree import build_tree
from shared.core.workflow import (
    Workflow,
    celery_priorities,
    check_workflow,
    parse_workflow,
    release_plan,
    remaining_path,
    schedule,
)
from shared.retry import Retry, classify, retry_after_seconds


def wf(*tasks: dict) -> Workflow:
    return Workflow.model_validate(
        {"name": "w", "goal": "g", "tasks": [{"description": t["id"], "agent": "a", **t} for t in tasks]}
    )


OPENAI = "autogen_ext.models.openai.OpenAIChatCompletionClient"


def tree_with(**extra: dict):
    """A model `m`, an agent `a` using it, a team `t` of `a`, and any `extra` components by label."""
    docs = {
        "m.yaml": {"provider": OPENAI, "component_type": "model", "label": "m", "config": {"model": "gpt-4o-mini"}},
        "a.yaml": {
            "provider": "p.Agent",
            "component_type": "agent",
            "label": "a",
            "config": {"model_client": {"$ref": "m"}},
        },
        "t.yaml": {
            "provider": "p.Team",
            "component_type": "team",
            "label": "t",
            "config": {"participants": [{"$ref": "a"}]},
        },
    }
    docs.update({f"{label}.yaml": {"provider": "p.X", "label": label, **doc} for label, doc in extra.items()})
    return build_tree(docs, {})


def test_both_spellings_parse_to_the_same_workflow() -> None:
    task = {"id": "t", "description": "d", "expected_output": "e", "agent": {"$ref": "a"}, "priority": 3}
    mine = parse_workflow("w.yaml", {"kind": "workflow", "name": "w", "goal": "g", "tasks": [task]})
    spec = parse_workflow(
        "w.yaml",
        {
            "provider": "agentq.Workflow",
            "component_type": "workflow",
            "label": "w",
            "config": {"goal": "g", "tasks": [task]},
        },
    )
    assert isinstance(mine, Workflow) and mine == spec
    assert mine.tasks[0].agent == "a" and mine.tasks[0].cache is True


@pytest.mark.parametrize(
    "doc, field, text",
    [
        ({"kind": "workflow", "name": "w", "tasks": []}, "tasks", "at least 1"),
        ({"kind": "workflow", "name": "w", "tasks": [{"id": "t", "agent": "a"}]}, "tasks[0].description", "required"),
        (
            {"kind": "workflow", "name": "w", "tasks": [{"id": "t", "description": " \n", "agent": "a"}]},
            "tasks[0].description",
            "is blank",
        ),
        (
            {"kind": 7, "name": "w", "tasks": [{"id": "t", "description": "d", "agent": "a"}]},
            "kind",
            "expected 'workflow'",
        ),
        *(
            (
                {"kind": "workflow", "name": "w", "tasks": [{"id": bad, "description": "d", "agent": "a"}]},
                "tasks[0].id",
                "may hold only ASCII letters, digits, '_', '.' and '-'",
            )
            for bad in ("a b", "t[1]", "café", "a/b")
        ),
        (
            {
                "kind": "workflow",
                "name": "w",
                "tasks": [{"id": "t", "description": "d", "agent": "a", "priority": "high"}],
            },
            "tasks[0].priority",
            "integer",
        ),
        *(
            (
                {
                    "kind": "workflow",
                    "name": "w",
                    "tasks": [{"id": "t", "description": "d", "agent": "a", "priority": p}],
                },
                "tasks[0].priority",
                text,
            )
            # a priority past 10^6 is no exact Redis score (one of 10^303 failed its tasks inside Redis)
            for p, text in (
                (10**303, "less than or equal to 1000000"),
                (-(10**7), "greater than"),
                ("7", "integer"),
                (True, "integer"),
            )
        ),
        (
            {"kind": "workflow", "name": "w", "tasks": [{"id": "t", "description": "d", "agent": "a", "colour": 1}]},
            "tasks[0].colour",
            "Extra inputs",
        ),
        (
            {
                "component_type": "workflow",
                "label": "w",
                "config": {"tasks": [{"id": "t", "description": "d", "agent": "a", "timeout": -1}]},
            },
            "config.tasks[0].timeout",
            "greater than 0",
        ),
    ],
)
def test_invalid_fields_are_named(doc: dict, field: str, text: str) -> None:
    errors = parse_workflow("flows/w.yaml", doc)
    assert isinstance(errors, list)
    assert any(e.field == field and text in e.message and e.path == "flows/w.yaml" for e in errors), errors


def test_a_task_on_a_team_whose_model_misses_a_variable_names_the_variable() -> None:
    """Through the chain of what was skipped for it: team t -> agent a -> model m."""
    tree = tree_with(
        m2={"component_type": "model", "config": {"model": "x", "api_key": "${AGENTQ_NOT_SET}"}},
        a2={"component_type": "agent", "config": {"model_client": {"$ref": "m2"}}},
        t2={"component_type": "team", "config": {"participants": [{"$ref": "a2"}]}},
    )
    (problem,) = check_workflow("w.yaml", wf({"id": "x", "agent": "t2"}), tree)
    assert problem.field == "tasks[0].agent" and "depends on 'a2' (a2.yaml) which was skipped" in problem.message
    assert "(m2.yaml: config.api_key: environment variable AGENTQ_NOT_SET is not set)" in problem.message, problem


def test_check_reports_unknown_ids_cycles_and_bad_agents() -> None:
    tree = tree_with()
    ok = wf({"id": "x"}, {"id": "y", "agent": "t", "dependencies": ["x"]})
    assert check_workflow("w.yaml", ok, tree) == []
    bad = wf(
        {"id": "x", "dependencies": ["zz"]},
        {"id": "y", "agent": "m"},
        {"id": "z", "agent": "nobody"},
        {"id": "p", "dependencies": ["q"]},
        {"id": "q", "dependencies": ["p"]},
        {"id": "x"},
        {"id": "twice", "dependencies": ["y", "p", "y"]},
    )
    text = "\n".join(str(e) for e in check_workflow("w.yaml", bad, tree))
    # a dependency named twice would put its output into the prompt twice
    assert "tasks[6].dependencies[2]: 'y' is named twice" in text and "dependencies[0]: 'y'" not in text
    assert "tasks[0].dependencies[0]: unknown task id 'zz'" in text
    assert "tasks[1].agent: 'm' (m.yaml) is a model" in text
    assert "tasks[2].agent: no agent or team labelled 'nobody'" in text
    assert "dependency cycle: p -> q -> p" in text
    assert "tasks[5].id: duplicate task id 'x'" in text


def test_check_refuses_agents_that_cannot_answer_before_anything_runs() -> None:
    claude = {
        "provider": "autogen_ext.models.anthropic.AnthropicChatCompletionClient",
        "label": "claude",
        "config": {"model": "claude-3-5-sonnet"},
    }
    tree = tree_with(
        mute={
            "component_type": "agent",
            "provider": "autogen_agentchat.agents.AssistantAgent",
            "config": {"name": "mute"},
        },
        poet={"component_type": "agent", "config": {"model_client": {"component_type": "model", **claude}}},
        nomodel={
            "component_type": "agent",
            "config": {"model_client": {"component_type": "model", "provider": OPENAI, "config": {}}},
        },
        nested={"component_type": "team", "config": {"participants": [{"$ref": "a"}, {"$ref": "t"}]}},
        empty={"component_type": "team", "config": {"participants": []}},
    )
    bad = wf(
        *({"id": f"x{i}", "agent": label} for i, label in enumerate(["mute", "poet", "nomodel", "nested", "empty"]))
    )
    text = "\n".join(str(e) for e in check_workflow("w.yaml", bad, tree))
    assert "tasks[0].agent: 'mute' (mute.yaml): agent 'mute' has no model_client" in text
    assert "tasks[1]" not in text  # AutoGen runs Anthropic's client itself (its package is checked apart)
    assert "tasks[2].agent: 'nomodel' (nomodel.yaml): model client '(inline)' has no config.model" in text
    assert "tasks[3].agent: 'nested' (nested.yaml): participant 't' is a team" in text
    assert "tasks[4].agent: 'empty' (empty.yaml): the team has no participants" in text
    assert check_workflow("w.yaml", wf({"id": "ok", "agent": "t"}), tree) == []


def test_schedule_orders_by_priority_then_critical_path_and_respects_dependencies() -> None:
    w = wf(
        {"id": "short", "priority": 1},
        {"id": "long", "priority": 1},
        {"id": "urgent", "priority": 9},
        {"id": "next", "dependencies": ["long"]},
        {"id": "last", "dependencies": ["next"]},
    )
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
    prompt = task_prompt(
        "the goal", {"description": "do X", "expected_output": "a list"}, [("a", "out-a"), ("b", "out-b")]
    )
    for text in ("Goal: the goal", "Task: do X", "Expected output: a list", "### a\nout-a", "### b\nout-b"):
        assert text in prompt


def test_task_key_covers_spec_agent_and_inputs_but_not_secret_values() -> None:
    task = {"id": "t", "description": "d", "expected_output": "e", "priority": 1}
    agent = {"config": {"model_client": {"config": {"api_key": "${KEY}"}}}}
    base = task_key("g", task, agent, [("a", "k1", "out")])
    assert base == task_key("g", {**task, "priority": 7}, agent, [("a", "k1", "out")])  # priority is scheduling only
    assert base != task_key("g", {**task, "description": "d2"}, agent, [("a", "k1", "out")])
    assert base != task_key("g", task, agent, [("a", "k1", "other output")])
    assert base != task_key("g", task, agent, [("a", "k2", "out")])
    assert base != task_key(
        "g", task, {"config": {"model_client": {"config": {"api_key": "${OTHER}"}}}}, [("a", "k1", "out")]
    )
    # the agent's node key holds its ${VAR}s that are no secret by value (shared/core/tree.py)
    assert base != task_key("g", task, agent, [("a", "k1", "out")], agent_key="node-key-under-another-MODEL")


def test_retry_after_seconds_and_dates() -> None:
    assert retry_after_seconds("2") == 2.0 and retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    later = email.utils.formatdate(time.time() + 5, usegmt=True)
    assert 3.0 <= retry_after_seconds(later) <= 5.0
    assert retry_after_seconds("100000") == 60.0  # capped
    # no wait asked for: the backoff applies, or a server saying "-5" had every retry at once
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    assert [retry_after_seconds(v) for v in ("0", "-5", "nan", past)] == [None] * 4
    from shared.adapters.studio import AnswerStatus

    assert classify(AnswerStatus(429, {"retry-after": "-5"}, "")) == Retry("rate_limited", None)
    assert classify(AnswerStatus(429, {"retry-after": "2"}, "")) == Retry("rate_limited", 2.0)


def test_release_plan_releases_each_task_after_its_own_inputs_only() -> None:
    w = wf(
        {"id": "a1"},
        {"id": "a2", "dependencies": ["a1"]},
        {"id": "b1", "priority": 5},
        {"id": "b2", "dependencies": ["b1", "b1"]},
        {"id": "c", "dependencies": ["a2", "b2"]},
    )
    plan = release_plan(w)
    assert plan.ready == ["b1", "a1"]  # priority first
    assert plan.open == {"a2": 1, "b2": 1, "c": 2}  # a duplicated dependency counts once
    assert plan.dependents == {"a1": ["a2"], "a2": ["c"], "b1": ["b2"], "b2": ["c"], "c": []}
    # equal priority: the longer chain behind a task goes first
    w2 = wf({"id": "short"}, {"id": "long"}, {"id": "x", "dependencies": ["long"]}, {"id": "y", "dependencies": ["x"]})
    assert release_plan(w2).ready == ["long", "short"]
    assert release_plan(w2).ranks["long"] > release_plan(w2).ranks["short"]


def test_sequential_release_plan_is_one_chain_in_schedule_order() -> None:
    w = wf({"id": "a"}, {"id": "b", "priority": 3}, {"id": "c", "dependencies": ["a", "b"]})
    plan = release_plan(w, sequential=True)
    assert plan.ready == ["b"] and plan.dependents == {"b": ["a"], "a": ["c"], "c": []}
    assert plan.open == {"a": 1, "c": 1}


def test_model_specs_limit_keys_and_concurrency() -> None:
    model = {
        "provider": OPENAI,
        "component_type": "model",
        "max_concurrency": 3,
        "config": {"model": "llama", "base_url": "http://127.0.0.1:1/v1", "api_key": "${KEY}"},
    }
    team = {
        "provider": "autogen_agentchat.teams.SelectorGroupChat",
        "component_type": "team",
        "config": {
            "participants": [
                {"provider": "a.AssistantAgent", "component_type": "agent", "config": {"model_client": model}}
            ],
            "model_client": {**model, "config": {**model["config"], "model": "other"}},
        },
    }
    assert [m["config"]["model"] for m in model_specs(team)] == ["llama", "other"]
    assert limit_key(model) == limit_key({**model, "label": "renamed", "config": {**model["config"], "api_key": "x"}})
    assert limit_key(model) != limit_key(model_specs(team)[1])
    assert max_concurrency(model, 8) == 3 and max_concurrency({"config": {}}, 8) == 8


def test_missing_provider_packages_name_what_to_install() -> None:
    anthropic = {
        "provider": "autogen_ext.models.anthropic.AnthropicChatCompletionClient",
        "component_type": "model",
        "config": {"model": "claude"},
    }
    agent = {"provider": "autogen_agentchat.agents.AssistantAgent", "config": {"model_client": anthropic}}
    installed = {"autogen_agentchat", "autogen_ext", "openai", "tiktoken"}
    problems = missing_packages(agent, lambda module: module in installed)
    assert problems == [
        "provider autogen_ext.models.anthropic.AnthropicChatCompletionClient needs anthropic, which is not "
        "installed: pip install 'autogen-ext[anthropic]'"
    ]
    assert missing_packages(agent, lambda module: True) == []
    assert (
        "install the package that provides 'mypkg'" in missing_packages({"provider": "mypkg.Agent"}, lambda m: False)[0]
    )


def test_retry_policy_by_status_and_exception_type() -> None:
    import httpx
    import openai

    def status_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
        response = httpx.Response(status, headers=headers, request=httpx.Request("POST", "http://127.0.0.1:9"))
        return openai.APIStatusError("x", response=response, body=None)

    assert classify(status_error(429, {"Retry-After": "2"})) == Retry("rate_limited", 2.0)
    assert classify(status_error(503)) == Retry("server_error", None)
    assert classify(status_error(500)).cause == "server_error"
    assert classify(status_error(400)) is None and classify(status_error(404)) is None
    assert classify(openai.APITimeoutError(request=httpx.Request("POST", "http://127.0.0.1:9"))).cause == "timeout"
    assert (
        classify(openai.APIConnectionError(request=httpx.Request("POST", "http://127.0.0.1:9"))).cause == "connection"
    )
    assert classify(ValueError("no")) is None


def test_one_retry_loop_honours_retry_after_stops_on_final_errors_and_gives_up_early() -> None:
    import asyncio

    import httpx

    from shared.retry import retrying

    request = httpx.Request("POST", "http://127.0.0.1:9/x")

    def answer(status: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
        return httpx.HTTPStatusError("x", request=request, response=httpx.Response(status, headers=headers))

    async def run(errors: list[BaseException], attempts: int, **kw: object) -> tuple[object, list[str], list[float]]:
        causes: list[str] = []
        waits: list[float] = []
        loop = retrying(attempts, 0.001, causes.append, **kw)
        loop.sleep = lambda s: waits.append(s) or asyncio.sleep(0)
        try:
            async for attempt in loop:
                with attempt:
                    if errors:
                        raise errors.pop(0)
                    return "ok", causes, waits
        except Exception as exc:  # noqa: BLE001  the last error, as it was raised
            return exc, causes, waits
        raise AssertionError

    got, causes, waits = asyncio.run(run([answer(429, {"Retry-After": "3"}), answer(503)], 5))
    assert got == "ok" and causes == ["rate_limited", "server_error"] and waits[0] == 3.0 and waits[1] < 0.01
    final = answer(404)
    assert asyncio.run(run([final, answer(500)], 5))[0] is final  # a 404 is final: not tried again
    last = answer(500)
    got, causes, _ = asyncio.run(run([answer(500), answer(500), last], 3))
    assert got is last and causes == ["server_error", "server_error"]
    timeout = httpx.ReadTimeout("slow", request=request)
    got, causes, _ = asyncio.run(
        run([timeout, answer(500)], 5, give_up=lambda exc: isinstance(exc, httpx.TimeoutException))
    )
    assert got is timeout and causes == []


def test_a_loop_after_a_first_try_made_outside_it_counts_that_try(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model call tries once outside tenacity's loop (workers/task_models.py), then `pause`
    and `retrying(..., done=1)` go on as one loop would have: same causes, same attempt count, the
    backoff of the second failure and not of the first."""
    import asyncio
    import random

    import httpx

    from shared.retry import backoff_delay, pause, retrying

    request = httpx.Request("POST", "http://127.0.0.1:9/x")
    failures = [httpx.HTTPStatusError("x", request=request, response=httpx.Response(500)) for _ in range(5)]

    async def go() -> tuple[int, list[str], list[float]]:
        causes: list[str] = []
        waits: list[float] = []
        tries = 1  # the first, made outside the loop, failed with failures[0]
        real_sleep = asyncio.sleep

        async def sleep(seconds: float) -> None:
            waits.append(seconds)
            await real_sleep(0)

        monkeypatch.setattr(asyncio, "sleep", sleep)
        await pause(failures[0], 1.0, causes.append)
        monkeypatch.undo()
        loop = retrying(4, 1.0, causes.append, done=1)
        loop.sleep = sleep
        try:
            async for attempt in loop:
                with attempt:
                    tries += 1
                    raise failures[tries - 1]
        except httpx.HTTPStatusError as exc:
            assert exc is failures[3]  # the last try's own error
        return tries, causes, waits

    random.seed(7)
    tries, causes, waits = asyncio.run(go())
    assert tries == 4 and causes == ["server_error"] * 3
    random.seed(7)
    assert waits == [backoff_delay(n, 1.0) for n in range(3)]  # full jitter over 1, 2 and 4 seconds


def test_a_user_proxy_agent_is_refused_before_anything_runs() -> None:
    """A UserProxyAgent's answers are typed by a person: alone or in a team, its task could only
    fail on a worker (AutoGen's input() meets no terminal), so `producer run` says so first."""
    proxy = {"provider": "autogen_agentchat.agents.UserProxyAgent", "config": {"name": "you", "description": "d"}}
    # a SocietyOfMindAgent's inner team held one unseen: its task waited on the worker's input()
    inner = {"participants": [{"$ref": "a"}, {"component_type": "agent", **proxy, "label": "UserProxyAgent"}]}
    tree = tree_with(
        you={"component_type": "agent", **proxy},
        duo={"component_type": "team", "config": {"participants": [{"$ref": "a"}, {"$ref": "you"}]}},
        som={
            "component_type": "agent",
            "provider": "autogen_agentchat.agents.SocietyOfMindAgent",
            "config": {"name": "som", "description": "d", "team": {"component_type": "team", "config": inner}},
        },
    )
    tasks = wf({"id": "x", "agent": "you"}, {"id": "y", "agent": "duo"}, {"id": "z", "agent": "som"})
    text = "\n".join(str(e) for e in check_workflow("w.yaml", tasks, tree))
    assert "tasks[0].agent: 'you' (you.yaml): agent 'you' is a UserProxyAgent" in text
    assert "tasks[1].agent: 'duo' (duo.yaml): agent 'you' is a UserProxyAgent" in text
    assert "tasks[2].agent: 'som' (som.yaml): agent 'you' is a UserProxyAgent" in text  # its name, not Studio's label


def test_a_model_client_that_takes_no_model_name_is_not_asked_for_one() -> None:
    """AutoGen's ReplayChatCompletionClient has no `config.model`: Studio runs it, so does a task.
    An OpenAI client without one is refused once, however many agents share it."""
    replay = {
        "component_type": "model",
        "provider": "autogen_ext.models.replay.ReplayChatCompletionClient",
        "config": {"chat_completions": ["first", "second"]},
    }
    nameless = {"component_type": "model", "provider": OPENAI, "config": {}}

    def agent(name: str, model: dict[str, Any]) -> dict[str, Any]:
        return {"component_type": "agent", "config": {"name": name, "model_client": model}}

    tree = tree_with(
        r=agent("r", replay),
        duo={"component_type": "team", "config": {"participants": [agent("x", nameless), agent("y", nameless)]}},
    )
    assert check_workflow("w.yaml", wf({"id": "ok", "agent": "r"}), tree) == []
    text = "\n".join(str(e) for e in check_workflow("w.yaml", wf({"id": "no", "agent": "duo"}), tree))
    assert text.count("has no config.model") == 1, text


def test_an_unknown_agent_named_after_a_file_that_could_not_be_read_names_that_file() -> None:
    """`agents/writer.yaml` is malformed YAML: the task's `writer` was only "not in the tree"."""
    from shared.core.errors import ConfigError
    from shared.core.tree import build_tree

    docs = {"agents/writer.yaml": ConfigError(path="agents/writer.yaml", message="malformed YAML at line 2")}
    (problem,) = check_workflow("w.yaml", wf({"id": "x", "agent": "writer"}), build_tree(docs, {}))
    assert "no agent or team labelled 'writer' in the tree" in problem.message, problem
    assert "its file may be agents/writer.yaml, which could not be used" in problem.message, problem
