"""`producer run` end to end: real Redis, real celery worker processes (two), and the local
stand-in OpenAI-compatible endpoint (it records every request and can be slow or fail)."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from shared.adapters.redis.metrics import read_counters
from tests.conftest import TEST_MODEL, TEST_SECRET, Cli, assert_not_in_redis

pytestmark = pytest.mark.integration

MODEL_INFO = {
    "vision": False,
    "function_calling": True,
    "json_output": True,
    "family": "unknown",
    "structured_output": True,
}


def agent_doc(label: str, model: str = "m", **config: Any) -> dict[str, Any]:
    """An AssistantAgent as Studio exports it (AutoGen 0.5 requires these fields)."""
    return {
        "provider": "autogen_agentchat.agents.AssistantAgent",
        "component_type": "agent",
        "label": label,
        "component_version": 1,
        "version": 1,
        "config": {
            "name": label,
            "description": f"{label} the agent",
            "system_message": f"You are {label}.",
            "model_client": {"$ref": model},
            "model_client_stream": False,
            "reflect_on_tool_use": False,
            "tool_call_summary_format": "{result}",
            **config,
        },
    }


def model_doc(label: str, base_url: str, max_concurrency: int = 8, **config: Any) -> dict[str, Any]:
    """A model on the stand-in; its key comes from ${AGENTQ_TEST_SECRET} on the worker."""
    return {
        "provider": "autogen_ext.models.openai.OpenAIChatCompletionClient",
        "component_type": "model",
        "label": label,
        "max_concurrency": max_concurrency,
        "component_version": 1,
        "version": 1,
        "config": {
            "model": f"standin-{uuid.uuid4().hex[:6]}",
            "base_url": base_url,
            "api_key": "${AGENTQ_TEST_SECRET}",
            "model_info": MODEL_INFO,
            **config,
        },
    }


def write_docs(root: Path, docs: dict[str, dict[str, Any]]) -> None:
    for rel, doc in docs.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(yaml.safe_dump(doc))


def write_tree(root: Path, base_url: str, max_concurrency: int = 8) -> None:
    """A model on the stand-in, two agents and a round-robin team of them."""
    write_docs(
        root,
        {
            "models/m.yaml": model_doc("m", base_url, max_concurrency, temperature=0.3),
            "agents/a.yaml": agent_doc("alice"),
            "agents/b.yaml": agent_doc("bob"),
            "teams/t.yaml": {
                "provider": "autogen_agentchat.teams.RoundRobinGroupChat",
                "component_type": "team",
                "label": "duo",
                "config": {
                    "participants": [{"$ref": "alice"}, {"$ref": "bob"}],
                    "termination_condition": {
                        "provider": "autogen_agentchat.conditions.MaxMessageTermination",
                        "component_type": "termination",
                        "config": {"max_messages": 4},
                    },
                },
            },
        },
    )


def write_workflow(root: Path, tasks: list[dict[str, Any]], name: str = "wf") -> Path:
    path = root / "workflows" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    for t in tasks:
        t.setdefault("expected_output", "a short answer")
        t.setdefault("agent", {"$ref": "alice"})
    path.write_text(yaml.safe_dump({"kind": "workflow", "name": name, "goal": "test the workers", "tasks": tasks}))
    return path


def run(cli: Cli, path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    proc = cli.run("run", str(path), "--json", *args)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"no JSON report\nstdout: {proc.stdout}\nstderr: {proc.stderr}") from None


def task_of(request: dict[str, Any]) -> str:
    prompt = next(m["content"] for m in request["messages"] if m["role"] == "user")
    return next(line for line in prompt.splitlines() if line.startswith("Task: ")).removeprefix("Task: ")


def test_outputs_flow_to_dependents_after_they_finish(wf_cli: Cli, standin, tmp_path: Path) -> None:
    url, state = standin
    state.control["delay"] = 0.2
    write_tree(tmp_path, url)
    wf = write_workflow(
        tmp_path,
        [
            {"id": "a", "description": "first input"},
            {"id": "b", "description": "second input", "agent": {"$ref": "bob"}},
            {"id": "c", "description": "combine", "dependencies": ["a", "b"]},
            {"id": "d", "description": "team review", "agent": {"$ref": "duo"}, "dependencies": ["c"]},
        ],
    )
    rc, report = run(wf_cli, wf)
    assert rc == 0, report
    tasks = report["tasks"]
    assert all(t["status"] == "done" for t in tasks.values())
    by_task = {}
    for req in state.requests:
        by_task.setdefault(task_of(req), []).append(req)
    combine = by_task["combine"][0]
    prompt = combine["messages"][-1]["content"]
    assert tasks["a"]["output"] in prompt and tasks["b"]["output"] in prompt
    assert combine["started"] >= max(by_task["first input"][0]["finished"], by_task["second input"][0]["finished"])
    # the team took turns up to its termination condition: 4 messages = the task + 3 answers
    assert len(by_task["team review"]) == 3
    assert min(r["started"] for r in by_task["team review"]) >= combine["finished"]
    assert tasks["d"]["prompt_tokens"] > 0 and tasks["d"]["model_calls"] == 3
    assert tasks["c"]["output"] in by_task["team review"][0]["messages"][-1]["content"]
    # the model component's request settings reach the endpoint
    assert all(req["params"]["temperature"] == 0.3 for req in state.requests)


def test_of_two_tasks_released_together_the_higher_priority_goes_first_30_of_30(
    wf_cli: Cli, standin, tmp_path: Path
) -> None:
    """30 trials in one run: each has its own model limited to one request, a root task, and two
    tasks (priority 9 and 1) that the root's end releases together."""
    url, state = standin
    docs: dict[str, dict[str, Any]] = {}
    tasks: list[dict[str, Any]] = []
    for i in range(30):
        docs[f"models/m{i}.yaml"] = model_doc(f"m{i}", url, max_concurrency=1)
        docs[f"agents/a{i}.yaml"] = agent_doc(f"agent{i}", model=f"m{i}")
        agent = {"$ref": f"agent{i}"}
        tasks += [
            {"id": f"root{i}", "description": f"trial {i} root", "agent": agent},
            {
                "id": f"low{i}",
                "description": f"trial {i} low",
                "priority": 1,
                "dependencies": [f"root{i}"],
                "agent": agent,
            },
            {
                "id": f"high{i}",
                "description": f"trial {i} high",
                "priority": 9,
                "dependencies": [f"root{i}"],
                "agent": agent,
            },
        ]
    write_docs(tmp_path, docs)
    rc, report = run(wf_cli, write_workflow(tmp_path, tasks))
    assert rc == 0, report
    for i in range(30):
        order = [
            task_of(q)
            for q in sorted(state.requests, key=lambda q: q["started"])
            if task_of(q).startswith(f"trial {i} ")
        ]
        assert order == [f"trial {i} root", f"trial {i} high", f"trial {i} low"], f"trial {i}: {order}"


def test_rerun_hits_the_cache_and_a_change_reruns_exactly_its_dependents(wf_cli: Cli, standin, tmp_path: Path) -> None:
    url, state = standin
    write_tree(tmp_path, url)
    tasks = [
        {"id": "a", "description": "alpha"},
        {"id": "b", "description": "beta"},
        {"id": "c", "description": "gamma", "dependencies": ["a"]},
        {"id": "d", "description": "delta", "dependencies": ["c"]},
        {"id": "e", "description": "epsilon", "dependencies": ["b"]},
    ]
    wf = write_workflow(tmp_path, [dict(t) for t in tasks])
    assert run(wf_cli, wf)[0] == 0
    first = len(state.requests)
    assert first == 5

    r = redis.Redis.from_url(wf_cli.redis_url, decode_responses=True)
    hits_before = read_counters(r).get(("agentq_cache_requests_total", ("workflow_task", "hit")), 0.0)
    rc, report = run(wf_cli, wf)
    assert rc == 0 and len(state.requests) == first  # not one model request
    assert all(t["status"] == "cached" for t in report["tasks"].values())
    # the producer's hits count where the exporter reads them
    assert read_counters(r)[("agentq_cache_requests_total", ("workflow_task", "hit"))] - hits_before == 5

    tasks[2]["description"] = "gamma, revised"
    write_workflow(tmp_path, [dict(t) for t in tasks])
    rc, report = run(wf_cli, wf)
    assert rc == 0
    assert sorted(task_of(q) for q in state.requests[first:]) == ["delta", "gamma, revised"]
    assert {t for t, v in report["tasks"].items() if v["status"] == "done"} == {"c", "d"}

    rc, report = run(wf_cli, wf, "--no-cache")
    assert rc == 0 and len(state.requests) == first + 2 + 5


def test_flaky_endpoint_is_retried_and_a_failing_task_only_stops_its_dependents(
    wf_cli: Cli, standin, tmp_path: Path
) -> None:
    url, state = standin
    # every fifth request fails (20%), alternately 429 with Retry-After and 500
    state.control.update(fail_every=5, fail_status=[429, 500], retry_after=0.05)
    write_tree(tmp_path, url)
    tasks = [{"id": f"t{i}", "description": f"flaky task {i}", "retries": 10} for i in range(12)]
    rc, report = run(wf_cli, write_workflow(tmp_path, tasks))
    assert rc == 0 and all(t["status"] == "done" for t in report["tasks"].values()), report["tasks"]
    # 12 answers take at least 14 requests: the 5th (a 500) and the 10th (a 429) fail and are retried
    assert report["retries"].get("rate_limited", 0) > 0 and report["retries"].get("server_error", 0) > 0
    assert {429, 500} <= {q["status"] for q in state.requests}

    # a task that always fails is reported; only what depends on it is skipped
    state.control.update(fail_every=0, fail_when_contains="ALWAYS-FAIL")
    tasks = [
        {"id": "doomed", "description": "ALWAYS-FAIL here", "retries": 2},
        {"id": "after-doomed", "description": "needs doomed", "dependencies": ["doomed"]},
        {"id": "sibling", "description": "independent sibling"},
    ]
    r = redis.Redis.from_url(wf_cli.redis_url, decode_responses=True)
    before = read_counters(r)
    rc, report = run(wf_cli, write_workflow(tmp_path, tasks, name="doomed"))
    assert rc == 1
    after = read_counters(r)  # failed tasks count where the failure-rate alert sees them

    def added(status: str) -> float:
        key = ("agentq_workflow_tasks_total", (status,))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert (added("failed"), added("skipped"), added("done")) == (1, 1, 1)
    t = report["tasks"]
    assert t["sibling"]["status"] == "done"
    assert t["doomed"]["status"] == "failed" and "answered 500" in t["doomed"]["error"]
    assert t["after-doomed"]["status"] == "skipped" and "doomed" in t["after-doomed"]["reason"]
    assert sum("ALWAYS-FAIL" in q["messages"][-1]["content"] for q in state.requests) == 3  # 1 try + 2 retries
    assert wf_cli.run("result", report["run_id"]).returncode == 1  # like `status`: what it reports failed

    # random failures (20%) too, on a fresh workflow: it still completes
    state.control.update(fail_every=0, fail_rate=0.2, fail_status=[500, 429], fail_when_contains=None)
    tasks = [{"id": f"u{i}", "description": f"flaky again {i}", "retries": 10} for i in range(12)]
    rc, report = run(wf_cli, write_workflow(tmp_path, tasks, name="again"))
    assert rc == 0 and all(t["status"] == "done" for t in report["tasks"].values())


def test_a_200_that_is_no_answer_is_retried_and_named_when_it_is_final(wf_cli: Cli, standin, tmp_path: Path) -> None:
    """An HTML page from a proxy, JSON cut short, a completion without choices: AutoGen alone
    would fail on them with an AttributeError or IndexError."""
    url, state = standin
    state.control.update(fail_every=2, fail_status=["html", "truncated", "no_choices"])
    write_tree(tmp_path, url)
    tasks = [{"id": f"m{i}", "description": f"malformed {i}", "retries": 10} for i in range(6)]
    rc, report = run(wf_cli, write_workflow(tmp_path, tasks, name="malformed"))
    assert rc == 0 and all(t["status"] == "done" for t in report["tasks"].values()), report["tasks"]
    assert report["retries"].get("malformed_answer", 0) >= 3
    assert {"html", "truncated", "no_choices"} <= {q["status"] for q in state.requests}

    for kind, said in (
        ("html", "not a chat completion: '<html>"),
        ("truncated", "JSON that does not parse"),
        ("no_choices", "without choices"),
    ):
        state.control.update(fail_every=1, fail_status=kind)
        rc, report = run(
            wf_cli, write_workflow(tmp_path, [{"id": "x", "description": f"always {kind}", "retries": 1}], name=kind)
        )
        assert rc == 1 and "Traceback" not in json.dumps(report)
        error = report["tasks"]["x"]["error"]
        assert f"at {url}" in error and "answered 200 with" in error and said in error, error


def test_model_concurrency_limit_holds_across_worker_processes(wf_cli: Cli, standin, tmp_path: Path) -> None:
    url, state = standin
    state.control["delay"] = 0.15
    write_tree(tmp_path, url, max_concurrency=3)
    wf = write_workflow(tmp_path, [{"id": f"t{i}", "description": f"parallel {i}"} for i in range(40)])
    rc, report = run(wf_cli, wf)
    assert rc == 0
    assert state.max_in_flight == 3
    r = redis.Redis.from_url(wf_cli.redis_url, decode_responses=True)
    states = r.hgetall(f"agentq:run:{report['run_id']}:nodes")
    assert len({json.loads(v)["pid"] for v in states.values()}) >= 2, "expected both worker processes to run tasks"


def test_sequential_mode_runs_one_task_at_a_time_with_the_same_results(wf_cli: Cli, standin, tmp_path: Path) -> None:
    url, state = standin
    state.control["delay"] = 0.05
    write_tree(tmp_path, url)
    tasks = [
        {"id": "x", "description": "ex"},
        {"id": "y", "description": "why"},
        {"id": "z", "description": "zed", "dependencies": ["x", "y"]},
    ]
    wf = write_workflow(tmp_path, tasks)
    rc, parallel = run(wf_cli, wf)
    rc2, sequential = run(wf_cli, wf, "--mode", "sequential", "--no-cache")
    assert rc == rc2 == 0
    assert {k: v["output"] for k, v in parallel["tasks"].items()} == {
        k: v["output"] for k, v in sequential["tasks"].items()
    }
    seq = sorted(state.requests[3:], key=lambda q: q["started"])
    assert all(a["finished"] <= b["started"] for a, b in zip(seq, seq[1:], strict=False))


def test_invalid_workflows_are_refused_before_anything_is_enqueued(wf_cli: Cli, standin, tmp_path: Path) -> None:
    url, _ = standin
    write_tree(tmp_path, url)
    wf = write_workflow(
        tmp_path,
        [
            {"id": "a", "description": "x", "dependencies": ["nope"]},
            {"id": "b", "description": "y", "agent": {"$ref": "ghost"}},
            {"id": "c", "description": "z", "agent": {"$ref": "m"}},
            {"id": "d", "description": "w", "dependencies": ["e"]},
            {"id": "e", "description": "v", "dependencies": ["d"]},
        ],
    )
    r = redis.Redis.from_url(wf_cli.redis_url)
    runs_before = len(list(r.scan_iter("agentq:run:*:meta")))
    proc = wf_cli.run("run", str(wf))
    assert proc.returncode == 2
    err = proc.stderr
    assert "workflows/wf.yaml: tasks[0].dependencies[0]: unknown task id 'nope'" in err
    # the tree it was looked for in (the folder above workflows/): another may be meant
    assert (
        f"tasks[1].agent: no agent or team labelled 'ghost' in the tree {tmp_path.resolve()} (--tree names another)"
        in err
    )
    assert "tasks[2].agent: 'm' (models/m.yaml) is a model, not an agent or team" in err
    assert "dependency cycle: d -> e -> d" in err
    assert len(list(r.scan_iter("agentq:run:*:meta"))) == runs_before


def test_secrets_stay_out_of_redis_logs_and_task_arguments(
    wf_cli: Cli, standin, tmp_path: Path, services_dir: Path
) -> None:
    url, state = standin
    write_tree(tmp_path, url)
    # a secret in a system message too: AutoGen's own event log would print the prompt in full;
    # and as the model's name, which the metrics label requests by
    write_docs(
        tmp_path,
        {
            "agents/a.yaml": agent_doc("alice", system_message="Sign as ${AGENTQ_TEST_SECRET}."),
            "models/m.yaml": model_doc("m", url, model="${AGENTQ_TEST_SECRET}"),
        },
    )
    wf = write_workflow(
        tmp_path, [{"id": "a", "description": "uses the key"}, {"id": "b", "description": "b", "dependencies": ["a"]}]
    )
    proc = wf_cli.run("run", str(wf), "--json")
    assert proc.returncode == 0, proc.stderr
    # the endpoint did get the key and the system message, resolved on the worker
    assert {q["auth_sha256"] for q in state.requests} == {hashlib.sha256(TEST_SECRET.encode()).hexdigest()}
    assert all(TEST_SECRET in json.dumps(q["messages"][0]) for q in state.requests)
    assert_not_in_redis(wf_cli.redis_url, TEST_SECRET)
    assert TEST_SECRET not in (services_dir / "worker.log").read_text(errors="replace")
    assert TEST_SECRET not in proc.stdout + proc.stderr
    # the requests were counted, under the model's name as the file writes it
    counters = redis.Redis.from_url(wf_cli.redis_url).hgetall("agentq:metrics:counters")
    assert any(b"agentq_model_tokens_total" in k and b"${AGENTQ_TEST_SECRET}" in k for k in counters), counters


def test_a_variable_that_is_no_secret_stays_in_the_answer_and_reaches_the_dependent_task(
    wf_cli: Cli, standin, tmp_path: Path
) -> None:
    """The stand-in repeats its model's name, here a `${VAR}` that is no secret: the answer is kept
    as AutoGen gives it, and the dependent task is given it unchanged, as an AutoGen pipeline would."""
    url, state = standin
    write_tree(tmp_path, url)
    write_docs(tmp_path, {"models/m.yaml": model_doc("m", url, model="${AGENTQ_TEST_MODEL}")})
    wf = write_workflow(
        tmp_path, [{"id": "a", "description": "names"}, {"id": "b", "description": "then", "dependencies": ["a"]}]
    )
    rc, report = run(wf_cli, wf, "--no-cache")
    assert rc == 0, report
    assert TEST_MODEL in report["tasks"]["a"]["output"] and "***" not in report["tasks"]["a"]["output"]
    given = [q for q in state.requests if "then" in json.dumps(q["messages"])]
    assert given and all(report["tasks"]["a"]["output"] in json.dumps(q["messages"]) for q in given)
    # the metrics name the model as it resolved, not as the template `${AGENTQ_TEST_MODEL}`
    from shared.adapters.redis.store import Store

    models = {labels[0] for name, labels in Store.from_url(wf_cli.redis_url, cache_ttl=60, run_ttl=60).histograms()}
    assert TEST_MODEL in models and "${AGENTQ_TEST_MODEL}" not in models, models


def test_secrets_stay_out_of_a_transcripts_tool_calls_and_results(
    wf_cli: Cli, standin, tmp_path: Path, services_dir: Path
) -> None:
    """The model sends the key back as a tool call's argument, and the tool's error quotes it: the
    transcript's `calls` and `results` are scrubbed as its text is."""
    url, state = standin
    write_tree(tmp_path, url)
    leak = (
        "def leak(note: str) -> str:\n    import os\n    raise ValueError('boom ' + os.environ['AGENTQ_TEST_SECRET'])\n"
    )
    tool = {"name": "leak", "description": "leaks", "source_code": leak, "global_imports": []}
    write_docs(
        tmp_path,
        {
            "tools/leak.yaml": {
                "provider": "autogen_core.tools.FunctionTool",
                "component_type": "tool",
                "label": "leak",
                "config": {**tool, "has_cancellation_support": False},
            },
            "workbenches/w.yaml": {
                "provider": "autogen_core.tools.StaticWorkbench",
                "component_type": "workbench",
                "label": "w",
                "config": {"tools": [{"$ref": "leak"}]},
            },
            "agents/a.yaml": agent_doc("alice", workbench={"$ref": "w"}),
        },
    )
    state.control["tool_args"] = {"note": f"the key is {TEST_SECRET}"}
    wf = write_workflow(tmp_path, [{"id": "a", "description": "call the tool"}])
    proc = wf_cli.run("run", str(wf), "--json")
    assert proc.returncode == 0, proc.stderr
    transcript = json.loads(proc.stdout)["tasks"]["a"]["transcript"]
    calls = [c for m in transcript for c in m.get("calls", [])]
    results = [r for m in transcript for r in m.get("results", [])]
    assert calls and results, transcript
    assert "***" in calls[0]["arguments"] and results[0]["content"] == "boom ***", (calls, results)
    assert TEST_SECRET not in proc.stdout + proc.stderr
    assert_not_in_redis(wf_cli.redis_url, TEST_SECRET)


def _raising_tool(tmp_path: Path, label: str, code: str) -> None:
    """A FunctionTool `label` running `code`, in a workbench of its own, and an agent `label` using it."""
    write_docs(
        tmp_path,
        {
            f"tools/{label}.yaml": {
                "provider": "autogen_core.tools.FunctionTool",
                "component_type": "tool",
                "label": f"{label}-tool",
                "config": {
                    "name": label.replace("-", "_"),
                    "description": "raises",
                    "source_code": code,
                    "global_imports": [],
                    "has_cancellation_support": False,
                },
            },
            f"workbenches/{label}.yaml": {
                "provider": "autogen_core.tools.StaticWorkbench",
                "component_type": "workbench",
                "label": f"{label}-bench",
                "config": {"tools": [{"$ref": f"{label}-tool"}]},
            },
            f"agents/{label}.yaml": agent_doc(label, workbench={"$ref": f"{label}-bench"}),
        },
    )


def test_a_tool_whose_code_raises_what_is_no_exception_fails_as_any_tool_and_the_worker_goes_on(
    wf_cli: Cli, standin, tmp_path: Path
) -> None:
    """SystemExit raised by a tool came out of the worker's event loop, whose thread died (every
    later task of that worker process hung while it still looked alive); GeneratorExit or a bare
    BaseException never ended its task, holding a worker slot for good; in a team, SystemExit left
    the team waiting for the task's timeout. Each is the tool's error, as any failing tool's is:
    AutoGen gives it to the model, and the task goes on. Code that raises one as it loads fails
    its task, named."""
    url, state = standin
    write_tree(tmp_path, url)
    raised = {"exits": "SystemExit(3)", "closes": "GeneratorExit", "bare": "BaseException('boom')"}
    for label, exc in raised.items():
        _raising_tool(tmp_path, label, f"def {label}(note: str) -> str:\n    raise {exc}\n")
    _raising_tool(
        tmp_path, "at-load", "raise BaseException('at load')\ndef at_load(note: str) -> str:\n    return note\n"
    )
    write_docs(
        tmp_path,
        {
            "teams/exit-team.yaml": {
                "provider": "autogen_agentchat.teams.RoundRobinGroupChat",
                "component_type": "team",
                "label": "exit-team",
                "config": {
                    "participants": [{"$ref": "exits"}, {"$ref": "bob"}],
                    "termination_condition": {
                        "provider": "autogen_agentchat.conditions.MaxMessageTermination",
                        "component_type": "termination",
                        "config": {"max_messages": 4},
                    },
                },
            }
        },
    )
    tasks = [{"id": label, "description": f"call the tool {label}", "agent": {"$ref": label}} for label in raised]
    tasks += [{"id": "team", "description": "the team calls it", "agent": {"$ref": "exit-team"}}]
    tasks += [{"id": "load", "description": "never runs", "agent": {"$ref": "at-load"}, "retries": 0}]
    code, report = run(wf_cli, write_workflow(tmp_path, tasks), "--timeout", "60")
    assert code == 1, report
    got = report["tasks"]
    assert got["load"]["status"] == "failed" and "its code raised BaseException" in got["load"]["error"], got["load"]
    for tid, exc in {**raised, "team": "SystemExit(3)"}.items():
        assert got[tid]["status"] == "done", (tid, got[tid])
        results = [r["content"] for m in got[tid]["transcript"] for r in m.get("results", [])]
        assert any(f"the tool's code raised {exc.partition('(')[0]}" in r for r in results), (tid, results)
    # the same workers run what comes next
    later = write_workflow(
        tmp_path, [{"id": f"b{i}", "description": f"after {i}", "agent": {"$ref": "bob"}} for i in range(8)], "later"
    )
    code, report = run(wf_cli, later, "--timeout", "60")
    assert code == 0, report
    assert {t["status"] for t in report["tasks"].values()} == {"done"}


def test_progress_shows_a_bar_per_task_with_its_status(wf_cli: Cli, standin, tmp_path: Path, redis_url: str) -> None:
    import io

    from rich.console import Console

    from producer.progress import follow_workflow
    from shared.adapters.redis.store import Store

    url, state = standin
    state.control["delay"] = 0.3
    write_tree(tmp_path, url)
    wf = write_workflow(
        tmp_path,
        [
            {"id": "first", "description": "progress first"},
            {"id": "second", "description": "progress second", "dependencies": ["first"]},
            {"id": "broken", "description": "ALWAYS-FAIL progress", "retries": 0},
            {"id": "after-broken", "description": "never runs", "dependencies": ["broken"]},
        ],
    )
    state.control["fail_when_contains"] = "ALWAYS-FAIL"
    proc = wf_cli.run("run", str(wf), "--no-wait")
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip()
    out = io.StringIO()
    store = Store.from_url(redis_url, cache_ttl=60, run_ttl=60)
    follow_workflow(
        store,
        run_id,
        ["first", "second", "broken", "after-broken"],
        Console(file=out, force_terminal=True, width=120),
        timeout=60,
    )
    text = out.getvalue()
    for tid in ("first", "second", "broken", "after-broken"):
        assert tid in text
    # each row went through the states a user watches: running, then how it ended
    assert "running" in text and "done" in text and "failed" in text and "skipped" in text


def test_a_task_that_times_out_waiting_out_a_429_says_what_the_model_answered(
    wf_cli: Cli, standin, tmp_path: Path
) -> None:
    """It said only "timed out after 1 s", of a task that never got an answer to wait for."""
    url, state = standin
    state.control.update(fail_rate=1.0, fail_status=429, retry_after=30)
    write_tree(tmp_path, url)
    wf = write_workflow(tmp_path, [{"id": "a", "description": "rate limited", "timeout": 1, "cache": False}])
    rc, report = run(wf_cli, wf)
    error = report["tasks"]["a"]["error"]
    assert rc == 1 and error.startswith("timed out after 1 s, waiting to retry its model (last: answered 429"), error


def test_a_run_past_a_timeout_under_a_second_ends_with_exit_4_naming_it_as_given(
    wf_cli: Cli, standin, tmp_path: Path
) -> None:
    url, state = standin
    state.control["delay"] = 0.3
    write_tree(tmp_path, url)
    wf = write_workflow(tmp_path, [{"id": "a", "description": "slow enough", "cache": False}])
    proc = wf_cli.run("run", str(wf), "--timeout", "0.02")
    assert proc.returncode == 4, (proc.returncode, proc.stderr)
    assert "still running after 0.02 s" in proc.stderr
    # and what becomes of the run: it goes on (a real Redis), and how to follow or stop it
    assert "goes on on the workers" in proc.stderr and "`producer cancel " in proc.stderr, proc.stderr


def test_a_team_task_that_failed_midway_shows_what_was_said_before_it_failed(
    wf_cli: Cli, standin, tmp_path: Path
) -> None:
    """A team's second speaker's model fails: the task fails, and its transcript shows the turns
    before, as a reader needs them to see where it went wrong (it was empty)."""
    url, state = standin
    write_tree(tmp_path, url)
    wf = write_workflow(
        tmp_path, [{"id": "halfway", "description": "talk it over", "agent": {"$ref": "duo"}, "retries": 0}]
    )
    state.control["fail_when_contains"] = "You are bob."  # bob's requests only: his system message
    rc, report = run(wf_cli, wf)
    assert rc == 1, report
    task = report["tasks"]["halfway"]
    assert task["status"] == "failed" and "500" in task["error"], task
    said = task["transcript"]
    assert [(m["source"], m["kind"]) for m in said] == [("user", "text"), ("alice", "text")], said
    shown = wf_cli.run("result", report["run_id"], "--markdown")
    assert said[1]["content"] and said[1]["content"] in shown.stdout, shown.stdout
