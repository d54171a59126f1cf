"""`producer team`: a workflow from a goal, with roles chosen for the team size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.core.facts import file_facts
from shared.core.team_plan import model_problem, roles_for, team_workflow
from shared.core.tree import build_tree
from shared.core.workflow import Workflow, parse_workflow
from tests.conftest import ROOT, Cli
from tests.test_workflow_run import agent_doc, model_doc, write_docs, write_tree


@pytest.mark.parametrize(
    ("size", "roles"),
    [
        (1, ["generalist"]),
        (3, ["researcher", "analyst", "writer"]),
        (5, ["researcher", "analyst", "writer", "critic", "editor"]),
        (7, ["researcher"] * 3 + ["analyst", "writer", "critic", "editor"]),
    ],
)
def test_roles_follow_the_team_size(size: int, roles: list[str]) -> None:
    assert [r.name for r in roles_for(size)] == roles


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8])
def test_research_first_review_last_and_every_document_valid(size: int) -> None:
    agents, doc = team_workflow("Compare two task queues", size, "m")
    workflow = parse_workflow("w.yaml", doc)
    assert isinstance(workflow, Workflow), workflow
    assert len(agents) == size == len(workflow.tasks)
    for label, agent in agents.items():
        facts = file_facts(f"{label}.yaml", agent)
        assert facts.label == label and not facts.errors and facts.refs == [("config.model_client", "m")]
    by_id = {t.id: t for t in workflow.tasks}
    first = [t for t in workflow.tasks if not t.dependencies]
    assert all(t.id.startswith(("researcher", "generalist")) for t in first)  # research needs nothing
    last = workflow.tasks[-1]
    assert not any(last.id in t.dependencies for t in workflow.tasks)  # nothing waits for the last task
    if size >= 5:
        assert last.id == "editor" and by_id["critic"].dependencies == ["writer"]
        assert by_id["analyst"].dependencies == [t.id for t in first]  # parallel research feeds the analysis


def test_a_team_workflow_runs_and_a_bigger_team_makes_more_requests(wf_cli: Cli, standin, tmp_path: Path) -> None:
    url, state = standin
    write_tree(tmp_path, url)
    calls = {}
    for size in (1, 3):
        before = len(state.requests)
        proc = wf_cli.run(
            "team",
            "Compare two task queues",
            "--team-size",
            str(size),
            "--model",
            "m",
            "--tree",
            str(tmp_path),
            "--name",
            f"q{size}",
            "--run",
            "--json",
        )
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report["counts"]["done"] == size and (tmp_path / "workflows" / f"q{size}.yaml").exists()
        calls[size] = len(state.requests) - before
    assert calls[3] > calls[1] >= 1, calls


def test_task_complexity_changes_dependencies_prompts_and_turns() -> None:
    from shared.core.team_plan import with_complexity

    agents, workflow = team_workflow("Compare two queues", 3, "m", "q")
    _, simple = with_complexity(agents, workflow, "simple", "m")
    assert all("dependencies" not in t for t in simple["tasks"])
    _, medium = with_complexity(agents, workflow, "medium", "m")
    assert medium["tasks"] == workflow["tasks"]
    components, complex_ = with_complexity(agents, workflow, "complex", "m")
    ids = [t["id"] for t in complex_["tasks"]]
    last = complex_["tasks"][-1]
    assert last["dependencies"] == ids[:-1]  # after every earlier task
    assert len(last["description"]) > 2 * len(workflow["tasks"][-1]["description"])
    team = components[last["agent"]["$ref"]]  # run by a two-agent team with a reviewer
    assert team["component_type"] == "team" and len(team["config"]["participants"]) == 2
    assert complex_["name"] != workflow["name"]
    with pytest.raises(ValueError, match="complexity"):
        with_complexity(agents, workflow, "hard", "m")


@pytest.mark.integration  # runs the program as a process
def test_a_name_that_climbs_out_of_the_tree_writes_inside_it(tmp_path: Path) -> None:
    tree, outside = tmp_path / "tree", tmp_path / "outside"
    write_docs(tree, {"models/m.yaml": model_doc("m", "http://127.0.0.1:9/v1")})  # the model the agents use
    outside.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "producer.cli", "team", "a goal", "--model", "m", "--tree", str(tree)]
        + ["--name", f"../../../{outside.name}/pwned", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    written = [Path(p) for p in json.loads(proc.stdout)["agents"]] + [Path(json.loads(proc.stdout)["workflow"])]
    assert all(p.resolve().is_relative_to(tree.resolve()) and p.is_file() for p in written), written
    assert not any(outside.iterdir()) and not list(tmp_path.glob("*pwned*"))


def test_the_model_must_be_a_model_component_of_the_tree() -> None:
    tree = build_tree(
        {"models/m.yaml": model_doc("m", "http://127.0.0.1:9/v1"), "agents/a.yaml": agent_doc("alice")}, {}
    )
    assert model_problem(tree, "m") is None
    unknown = model_problem(tree, "nosuch", "the tree t")
    assert unknown is not None and "'nosuch'" in unknown and "the tree t" in unknown and "'m'" in unknown
    agent = model_problem(tree, "alice")
    assert agent is not None and "'alice'" in agent and "agent" in agent and "agents/a.yaml" in agent
    assert "no model component" in (model_problem(build_tree({}, {}), "m") or "")
