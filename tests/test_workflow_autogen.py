"""Workflows run on AutoGen itself: tools, selector teams, termination conditions and Studio's own
gallery behave as AutoGen defines them, and each task starts when its own inputs are done.
Real Redis, real worker processes, the stand-in endpoint."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from producer.embedded import STUDIO_VENV_BIN
from shared.adapters.celery import create_app
from shared.settings import Settings
from tests.conftest import ROOT, TEST_SECRET, Cli
from tests.test_workflow_run import (
    MODEL_INFO,
    agent_doc,
    model_doc,
    run,
    task_of,
    write_docs,
    write_workflow,
)

pytestmark = pytest.mark.integration

TERMINATIONS = "autogen_agentchat.conditions"
# AutoGen 0.5's default, which Studio writes into every SelectorGroupChat it exports
SELECTOR_PROMPT = (
    "You are in a role play game. The following roles are available:\n{roles}.\nRead the following "
    "conversation. Then select the next role from {participants} to play. Only return the role.\n\n{history}\n\n"
    "Read the above conversation. Then select the next role from {participants} to play. Only return the role.\n"
)


def termination(kind: str, **config: Any) -> dict[str, Any]:
    return {"provider": f"{TERMINATIONS}.{kind}", "component_type": "termination", "config": config}


def round_robin(label: str, participants: list[str], stop: dict[str, Any]) -> dict[str, Any]:
    """A RoundRobinGroupChat of the agents labelled `participants`, as Studio exports one."""
    return {
        "provider": "autogen_agentchat.teams.RoundRobinGroupChat",
        "component_type": "team",
        "label": label,
        "config": {"participants": [{"$ref": p} for p in participants], "termination_condition": stop},
    }


def add_tool() -> dict[str, Any]:
    """The example tree's `add` FunctionTool, as Studio exports it."""
    return yaml.safe_load((Path(__file__).resolve().parent.parent / "examples" / "tools" / "add.yaml").read_text())


def test_an_agents_tool_is_offered_to_the_model_and_run_on_the_worker(wf_cli: Cli, standin, tmp_path: Path) -> None:
    url, state = standin
    tool = add_tool()
    write_docs(
        tmp_path,
        {
            "models/m.yaml": model_doc("m", url),
            "tools/add.yaml": tool,
            "agents/calc.yaml": agent_doc("calc", tools=[{"$ref": "add"}], reflect_on_tool_use=True),
        },
    )
    rc, report = run(
        wf_cli, write_workflow(tmp_path, [{"id": "sum", "description": "add two numbers", "agent": {"$ref": "calc"}}])
    )
    assert rc == 0, report
    first, second = state.requests
    assert [t["function"]["name"] for t in first["params"]["tools"]] == ["add"]
    # the stand-in called add(2, 3); the worker ran the tool and sent its result back
    tool_messages = [m for m in second["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_messages] == ["5"]
    proc = wf_cli.run("result", report["run_id"], "--markdown")
    assert proc.returncode == 0
    for kind in ("tool_call", "text"):
        assert f"({kind})" in proc.stdout, proc.stdout
    # a call as a reader writes it, with its result on the same line (no Python reprs)
    assert "(tool_call): add(a=2, b=3) → 5" in proc.stdout, proc.stdout
    assert "FunctionCall(" not in proc.stdout and "FunctionExecutionResult(" not in proc.stdout


def test_selector_group_chat_lets_the_selected_speaker_speak(wf_cli: Cli, standin, tmp_path: Path) -> None:
    url, state = standin
    state.control["select"] = ["carol", "alice", "carol"]
    write_docs(
        tmp_path,
        {
            "models/m.yaml": model_doc("m", url),
            **{f"agents/{n}.yaml": agent_doc(n) for n in ("alice", "bob", "carol")},
            "teams/sel.yaml": {
                "provider": "autogen_agentchat.teams.SelectorGroupChat",
                "component_type": "team",
                "label": "sel",
                "config": {
                    "participants": [{"$ref": n} for n in ("alice", "bob", "carol")],
                    "model_client": {"$ref": "m"},
                    "allow_repeated_speaker": True,
                    "selector_prompt": SELECTOR_PROMPT,
                    "termination_condition": termination("MaxMessageTermination", max_messages=4),
                },
            },
        },
    )
    rc, report = run(
        wf_cli, write_workflow(tmp_path, [{"id": "talk", "description": "discuss", "agent": {"$ref": "sel"}}])
    )
    assert rc == 0, report["tasks"]
    transcript = json.loads(wf_cli.run("result", report["run_id"], "--json").stdout)["tasks"]["talk"]["transcript"]
    assert [m["source"] for m in transcript if m["kind"] == "text"] == ["user", "carol", "alice", "carol"]
    selections = [q for q in state.requests if "select the next role" in json.dumps(q["messages"])]
    assert len(selections) == 3


def test_and_termination_stops_only_when_both_conditions_hold(wf_cli: Cli, standin, tmp_path: Path) -> None:
    url, state = standin
    # every answer echoes the task line, so the text condition holds from the first answer on
    both = {
        "provider": "autogen_agentchat.base.AndTerminationCondition",
        "component_type": "termination",
        "config": {
            "conditions": [
                termination("TextMentionTermination", text="APPROVE"),
                termination("MaxMessageTermination", max_messages=5),
            ]
        },
    }
    write_docs(
        tmp_path,
        {
            "models/m.yaml": model_doc("m", url),
            "agents/a.yaml": agent_doc("alice"),
            "agents/b.yaml": agent_doc("bob"),
            "teams/t.yaml": round_robin("duo", ["alice", "bob"], both),
        },
    )
    rc, report = run(
        wf_cli, write_workflow(tmp_path, [{"id": "t", "description": "say APPROVE", "agent": {"$ref": "duo"}}])
    )
    assert rc == 0, report
    assert len(state.requests) == 4  # the task + 4 answers = 5 messages; Or would have stopped after 1


def _gallery(tmp_path: Path) -> dict[str, list[dict[str, Any]]]:
    """Studio's own default gallery, built by autogenstudio in its venv."""
    python = STUDIO_VENV_BIN.parent / "python"
    if not python.exists():
        pytest.fail(f"AutoGen Studio's venv is missing ({python}): run bash scripts/install.sh")
    out = tmp_path / "gallery.json"
    subprocess.run(
        [
            str(python),
            "-c",
            "import json, sys; from autogenstudio.gallery.builder import create_default_gallery; "
            "json.dump(create_default_gallery().model_dump(mode='json'), open(sys.argv[1], 'w'))",
            str(out),
        ],
        check=True,
        timeout=120,
    )
    return json.loads(out.read_text())["components"]


def _point_models_at(node: Any, url: str) -> None:
    """OpenAI-compatible model clients go to the stand-in (no paid API here)."""
    if isinstance(node, dict):
        if node.get("component_type") == "model" and str(node.get("provider")).endswith(".OpenAIChatCompletionClient"):
            node["config"].update(base_url=url, api_key="${AGENTQ_TEST_SECRET}")
            node["config"].setdefault("model_info", MODEL_INFO)
        for value in node.values():
            _point_models_at(value, url)
    elif isinstance(node, list):
        for value in node:
            _point_models_at(value, url)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def test_studios_default_gallery_loads_on_the_worker_and_its_teams_run(
    wf_cli: Cli, standin, tmp_path: Path, redis_url: str
) -> None:
    url, _ = standin
    gallery = _gallery(tmp_path)
    _point_models_at(gallery, url)
    tree = tmp_path / "tree"
    write_docs(tree, {f"{kind}/{i}.yaml": doc for kind, docs in gallery.items() for i, doc in enumerate(docs)})
    app = create_app(Settings(REDIS_URL=redis_url))  # routes agentq.load_component to the models queue
    verdicts = {
        team["label"]: app.send_task("agentq.load_component", args=(team,)).get(timeout=120)
        for team in gallery["teams"]
    }
    app.close()
    assert len(verdicts) == 4
    for label, verdict in verdicts.items():
        if not verdict["ok"]:
            # only a package this machine lacks may stop a team, and the error names it
            named = re.search(
                r"needs ([\w.]+), which is not installed|not installed on this worker \(([\w.]+)\)", verdict["error"]
            )
            assert named, (label, verdict)
            assert not _installed(named.group(1) or named.group(2)), (label, verdict)
    assert verdicts["RoundRobin Team"]["ok"] and verdicts["Selector Team"]["ok"], verdicts

    wf = write_workflow(
        tree,
        [
            {"id": "rr", "description": "gallery round robin", "agent": {"$ref": "RoundRobin Team"}},
            {"id": "sel", "description": "gallery selector", "agent": {"$ref": "Selector Team"}},
        ],
    )
    rc, report = run(wf_cli, wf)
    assert rc == 0, report
    assert {t["status"] for t in report["tasks"].values()} == {"done"}
    assert all(t["model_calls"] >= 2 for t in report["tasks"].values())


def test_a_task_starts_when_its_own_inputs_are_done(wf_cli: Cli, standin, tmp_path: Path) -> None:
    """A 3 s branch (a1 -> a2 0.5 s) beside a chain of six 0.5 s tasks: b2 starts before a1 ends,
    and first request to last answer stays within 1.15x of the critical path (3.5 s)."""
    url, state = standin
    write_docs(tmp_path, {"models/m.yaml": model_doc("m", url), "agents/a.yaml": agent_doc("alice")})
    tasks = [
        {"id": "a1", "description": "a1 [delay:3]"},
        {"id": "a2", "description": "a2 [delay:0.5]", "dependencies": ["a1"]},
    ]
    tasks += [
        {"id": f"b{i}", "description": f"b{i} [delay:0.5]", "dependencies": [f"b{i - 1}"] if i > 1 else []}
        for i in range(1, 7)
    ]
    rc, report = run(wf_cli, write_workflow(tmp_path, tasks), "--no-cache")
    assert rc == 0, report
    by_task = {task_of(q).split()[0]: q for q in state.requests}
    assert by_task["b2"]["started"] < by_task["a1"]["finished"]
    span = max(q["finished"] for q in state.requests) - min(q["started"] for q in state.requests)
    # the a chain's 3.5 s and the hops between its tasks (waves would add b's chain after a1)
    assert span <= 3.5 + 1.5, f"first request to last answer took {span:.2f} s"


@pytest.mark.integration  # runs the producer on the embedded default
def test_a_missing_provider_package_is_named_before_anything_starts(tmp_path: Path) -> None:
    """Embedded default (no REDIS_URL): the worker would share this environment, so a provider
    whose SDK is not installed is refused up front, naming the task, the provider and the extra."""
    if _installed("anthropic"):
        pytest.skip("anthropic is installed here")
    claude = {
        "provider": "autogen_ext.models.anthropic.AnthropicChatCompletionClient",
        "component_type": "model",
        "label": "claude",
        "config": {"model": "claude-3-7-sonnet-20250219", "api_key": "${ANTHROPIC_API_KEY:-x}"},
    }
    write_docs(tmp_path, {"models/claude.yaml": claude, "agents/poet.yaml": agent_doc("poet", model="claude")})
    wf = write_workflow(tmp_path, [{"id": "verse", "description": "a verse", "agent": {"$ref": "poet"}}])
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    proc = subprocess.run(
        [sys.executable, "-m", "producer.cli", "run", str(wf)],
        env={**env, "AGENTQ_CACHE_DIR": str(tmp_path / "c")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert (
        "tasks[0].agent: task 'verse': provider autogen_ext.models.anthropic.AnthropicChatCompletionClient needs anthropic"
        in proc.stderr
    )
    assert "pip install 'autogen-ext[anthropic]'" in proc.stderr
    assert "Started" not in proc.stderr and "Traceback" not in proc.stderr


def test_a_streaming_agent_answers_as_unstreamed_and_an_empty_stream_is_no_answer(
    wf_cli: Cli, standin, tmp_path: Path
) -> None:
    """`model_client_stream: true` makes AutoGen ask for server-sent chunks. An empty answer came
    back as done (and was cached) when the endpoint sent none, and a 429 failed the task."""
    url, state = standin
    streamed = agent_doc("streamer")
    streamed["config"]["model_client_stream"] = True
    write_docs(tmp_path, {"models/m.yaml": model_doc("m", url), "agents/s.yaml": streamed})
    tasks = [{"id": "s", "description": "say it streamed", "agent": {"$ref": "streamer"}}]
    rc, report = run(wf_cli, write_workflow(tmp_path, tasks))
    assert rc == 0, report
    assert state.requests[-1]["params"]["stream"] is True
    output = report["tasks"]["s"]["output"]
    assert output.startswith("[stand-in ") and output.endswith("Done: Task: say it streamed"), output

    # a 429 before the first chunk is retried as any request is (a streamed request was not retried)
    state.control.update(fail_every=2, fail_status=[429], retry_after=0.05)
    tasks[0]["description"] = "say it after a 429"
    rc, report = run(wf_cli, write_workflow(tmp_path, tasks))
    assert rc == 0 and report["retries"].get("rate_limited"), report
    assert report["tasks"]["s"]["output"].endswith("Done: Task: say it after a 429")

    # a proxy's HTML page where the chunks should be: retried, then the task fails saying so
    state.control.update(fail_every=0, fail_rate=1.0, fail_status="html")
    tasks[0]["description"] = "say it again"
    rc, report = run(wf_cli, write_workflow(tmp_path, tasks))
    assert rc == 1 and "streamed no answer" in report["tasks"]["s"]["error"], report
    assert report["retries"].get("malformed_answer"), report


def test_an_agent_with_structured_output_gets_a_value_of_its_schema(wf_cli: Cli, standin, tmp_path: Path) -> None:
    url, state = standin
    schema = {
        "title": "Verdict",
        "type": "object",
        "properties": {
            "approved": {"type": "boolean"},
            "score": {"type": "integer", "minimum": 1, "maximum": 5},
            "reasons": {"type": "array", "items": {"type": "string"}},
            "kind": {"enum": ["minor", "major"]},
        },
        "required": ["approved", "score", "reasons", "kind"],
    }
    judge = agent_doc("judge")
    judge["config"]["structured_message_factory"] = {
        "provider": "autogen_agentchat.messages.StructuredMessageFactory",
        "component_type": "structured_message",
        "version": 1,
        "component_version": 1,
        "config": {"json_schema": schema, "content_model_name": "Verdict"},
    }
    write_docs(tmp_path, {"models/m.yaml": model_doc("m", url), "agents/j.yaml": judge})
    tasks = [{"id": "j", "description": "judge the plan", "agent": {"$ref": "judge"}}]
    rc, report = run(wf_cli, write_workflow(tmp_path, tasks))
    assert rc == 0, report
    assert state.requests[-1]["params"]["response_format"]["type"] == "json_schema"
    verdict = json.loads(report["tasks"]["j"]["output"])
    assert verdict["approved"] is True and 1 <= verdict["score"] <= 5 and verdict["kind"] == "minor"
    assert verdict["reasons"] and all(isinstance(r, str) for r in verdict["reasons"])


def test_a_teams_failing_participant_is_named_without_a_traceback(wf_cli: Cli, standin, tmp_path: Path) -> None:
    """AutoGen hands a participant's failure to the team's caller with the participant's whole
    traceback in the message; the task's error keeps what it says."""
    url, state = standin
    team = round_robin("pair", ["alice"], termination("MaxMessageTermination", max_messages=2))
    write_docs(tmp_path, {"models/m.yaml": model_doc("m", url), "agents/a.yaml": agent_doc("alice"), "t.yaml": team})
    state.control.update(fail_rate=1.0, fail_status=400)  # a 400 is final: not retried
    tasks = [{"id": "t", "description": "fail in a team", "agent": {"$ref": "pair"}}]
    rc, report = run(wf_cli, write_workflow(tmp_path, tasks))
    error = report["tasks"]["t"]["error"]
    assert rc == 1 and "Traceback" not in error and ".py" not in error, error
    assert error.startswith("model 'standin-") and "answered 400" in error, error


def test_a_team_whose_chat_never_ends_stops_at_the_tasks_timeout(wf_cli: Cli, standin, tmp_path: Path) -> None:
    """A cancelled AutoGen team run waits for its chat to fall idle, which a chat whose termination
    never holds does not: the timeout stops the chat itself, and with it the model calls."""
    url, state = standin
    state.control["delay"] = 0.05
    team = round_robin("endless", ["alice", "bob"], termination("TextMentionTermination", text="ZZZ_NEVER_SAID"))
    write_docs(
        tmp_path,
        {
            "models/m.yaml": model_doc("m", url),
            "a.yaml": agent_doc("alice"),
            "b.yaml": agent_doc("bob"),
            "t.yaml": team,
        },
    )
    chat = [{"id": "chat", "description": "discuss", "agent": {"$ref": "endless"}, "cache": False, "timeout": 2}]
    rc, report = run(wf_cli, write_workflow(tmp_path, chat))
    task = report["tasks"]["chat"]
    # (a machine too loaded to fire the timer within a second says so after these words)
    assert rc == 1 and task["error"].startswith("timed out after 2 s"), task
    assert task["seconds"] < 12, task  # it used to run until cancelled by hand
    discussed = sum(task_of(r) == "discuss" for r in state.requests)
    assert discussed >= 2  # the chat did go on until the timeout
    # what the stopped chat cost is shown, as for a task that ended well
    assert task["model_calls"] >= discussed - 1 and task["prompt_tokens"] > 0, task
    # the worker takes other work; the stopped chat sends at most the request it had in hand
    after = [{"id": "next", "description": "after", "agent": {"$ref": "alice"}, "cache": False}]
    assert run(wf_cli, write_workflow(tmp_path, after, name="wf2"))[0] == 0
    assert sum(task_of(r) == "discuss" for r in state.requests) <= discussed + 1


def test_a_key_a_server_echoes_in_a_teams_failure_stays_out_of_the_worker_log(
    wf_cli: Cli, standin, tmp_path: Path, services_dir: Path
) -> None:
    """AutoGen logs a failing participant's traceback, and a team's every message, on the worker."""
    url, state = standin
    team = round_robin("pair", ["alice", "bob"], termination("MaxMessageTermination", max_messages=3))
    docs = {"models/m.yaml": model_doc("m", url), "a.yaml": agent_doc("alice"), "b.yaml": agent_doc("bob")}
    write_docs(tmp_path, {**docs, "t.yaml": team})
    chat = [{"id": "ok", "description": "talk", "agent": {"$ref": "pair"}, "cache": False}]
    assert run(wf_cli, write_workflow(tmp_path, chat))[0] == 0
    state.control.update(fail_rate=1.0, fail_status=401)  # "Incorrect API key provided: <the key>"
    rc, report = run(wf_cli, write_workflow(tmp_path, [{**chat[0], "id": "refused"}], name="wf2"))
    error = report["tasks"]["refused"]["error"]
    assert rc == 1 and "answered 401" in error and "Incorrect API key provided: ***" in error, error
    log = (services_dir / "worker.log").read_text(errors="replace")
    assert TEST_SECRET not in log
    assert "Publishing message of type" not in log and "Sending message of type" not in log


def test_terminal_escapes_in_a_models_answer_are_shown_as_text_in_the_markdown(
    wf_cli: Cli, standin, tmp_path: Path
) -> None:
    """The stand-in's answer repeats the task line: one that clears the screen and sets the title."""
    url, _ = standin
    write_docs(tmp_path, {"models/m.yaml": model_doc("m", url), "a.yaml": agent_doc("alice")})
    hostile = "A\x1b[2J\x1b]0;pwned\x07 \x9b31mB"
    rc, report = run(
        wf_cli, write_workflow(tmp_path, [{"id": "t", "description": hostile, "agent": {"$ref": "alice"}}])
    )
    assert rc == 0 and hostile in report["tasks"]["t"]["output"]  # the JSON keeps what the model said
    proc = wf_cli.run("result", report["run_id"], "--markdown")
    assert proc.returncode == 0 and not {"\x1b", "\x07", "\x9b"} & set(proc.stdout), proc.stdout
    assert "A\\x1b[2J\\x1b]0;pwned\\x07 \\x9b31mB" in proc.stdout, proc.stdout


def test_an_agent_autogen_refuses_is_named_by_its_file_and_field(wf_cli: Cli, standin, tmp_path: Path) -> None:
    """AutoGen 0.5 requires fields an older export lacks: the task fails naming the agent's file
    and the fields, and a task whose agent loads still runs."""
    url, _ = standin
    old = agent_doc("old")
    for required in ("description", "reflect_on_tool_use"):
        del old["config"][required]
    write_docs(
        tmp_path, {"models/m.yaml": model_doc("m", url), "agents/old.yaml": old, "agents/ok.yaml": agent_doc("ok")}
    )
    tasks = [
        {"id": "refused", "description": "d", "agent": {"$ref": "old"}},
        {"id": "runs", "description": "d", "agent": {"$ref": "ok"}},
    ]
    rc, report = run(wf_cli, write_workflow(tmp_path, tasks))
    assert rc == 1 and report["tasks"]["runs"]["status"] == "done", report
    error = report["tasks"]["refused"]["error"]
    assert error.startswith("agents/old.yaml: AutoGen refused the configuration: "), error
    assert "config.description: Field required" in error and "config.reflect_on_tool_use: Field required" in error


def test_a_component_autogen_refuses_inside_a_team_is_named_by_its_own_file(
    wf_cli: Cli, standin, tmp_path: Path
) -> None:
    """AutoGen refuses a participant (or a termination) while it loads the team that uses it: the
    error names the broken file and its field, not the team's; one written inline in the team's
    file is named by where it stands there."""
    url, _ = standin
    old = agent_doc("old")
    del old["config"]["reflect_on_tool_use"]
    inline = agent_doc("inline")
    del inline["config"]["reflect_on_tool_use"]
    inline["config"]["model_client"] = {"$ref": "m"}
    docs = {
        "models/m.yaml": model_doc("m", url),
        "agents/ok.yaml": agent_doc("ok"),
        "agents/old.yaml": old,
        "terminations/ten.yaml": termination("MaxMessageTermination", max_messages="ten") | {"label": "ten"},
        "teams/uses-old.yaml": round_robin(
            "uses-old", ["ok", "old"], termination("MaxMessageTermination", max_messages=2)
        ),
        "teams/uses-ten.yaml": round_robin("uses-ten", ["ok"], {"$ref": "ten"}),
        "teams/inline.yaml": round_robin("inline", ["ok"], termination("MaxMessageTermination", max_messages=2)),
    }
    docs["teams/inline.yaml"]["config"]["participants"].append(inline)
    write_docs(tmp_path, docs)
    tasks = [{"id": t, "description": "d", "agent": {"$ref": t}} for t in ("uses-old", "uses-ten", "inline")]
    rc, report = run(wf_cli, write_workflow(tmp_path, tasks))
    assert rc == 1, report
    errors = {tid: report["tasks"][tid]["error"] for tid in ("uses-old", "uses-ten", "inline")}
    assert errors["uses-old"].startswith("agents/old.yaml: AutoGen refused the configuration: "), errors
    assert "config.reflect_on_tool_use: Field required" in errors["uses-old"]
    assert errors["uses-ten"].startswith("terminations/ten.yaml: AutoGen refused the configuration: "), errors
    assert "config.max_messages: " in errors["uses-ten"]
    assert errors["inline"].startswith("teams/inline.yaml (config.participants[1]): AutoGen refused"), errors


def test_an_agent_whose_model_client_names_a_tool_is_explained_by_file_field_and_types(
    wf_cli: Cli, standin, tmp_path: Path
) -> None:
    """AutoGen says only "Expected type does not match" when a `$ref` names a component of another
    type: the task's error says which field of which file names what."""
    url, _ = standin
    tool = yaml.safe_load((ROOT / "examples/tools/add.yaml").read_text())
    wrong = agent_doc("wrong")
    wrong["config"]["model_client"] = {"$ref": tool["label"]}
    write_docs(tmp_path, {"models/m.yaml": model_doc("m", url), "tools/add.yaml": tool, "agents/wrong.yaml": wrong})
    rc, report = run(wf_cli, write_workflow(tmp_path, [{"id": "t", "description": "d", "agent": {"$ref": "wrong"}}]))
    error = report["tasks"]["t"]["error"]
    assert rc == 1 and "Expected type does not match" in error, error
    said = (
        f"agents/wrong.yaml: config.model_client refers to {tool['label']!r} (tools/add.yaml), a tool; it holds a model"
    )
    assert said in error, error


def test_a_replay_client_two_agents_share_answers_each_from_its_own_script(wf_cli: Cli, tmp_path: Path) -> None:
    """AutoGen's ReplayChatCompletionClient keeps its place in its script: each agent that names it
    gets its own, as in Studio (ann, ben, ann, ben: first, first, second, second), and a second run
    starts from the top again."""
    replay = {
        "provider": "autogen_ext.models.replay.ReplayChatCompletionClient",
        "component_type": "model",
        "label": "replay",
        "config": {"chat_completions": ["first", "second", "third", "fourth"]},
    }
    docs = {"models/replay.yaml": replay, "agents/ann.yaml": agent_doc("ann", "replay")}
    docs["agents/ben.yaml"] = agent_doc("ben", "replay")
    docs["teams/duo.yaml"] = round_robin("duo", ["ann", "ben"], termination("MaxMessageTermination", max_messages=5))
    write_docs(tmp_path, docs)
    wf = write_workflow(tmp_path, [{"id": "talk", "description": "talk", "agent": {"$ref": "duo"}}])
    for _ in range(2):
        rc, report = run(wf_cli, wf, "--no-cache")
        assert rc == 0, report
        transcript = json.loads(wf_cli.run("result", report["run_id"], "--json").stdout)["tasks"]["talk"]["transcript"]
        said = [(m["source"], m["content"]) for m in transcript if m["kind"] == "text" and m["source"] != "user"]
        assert said == [("ann", "first"), ("ben", "first"), ("ann", "second"), ("ben", "second")], said
