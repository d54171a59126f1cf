"""`producer team`: a team of agents and a workflow written for a goal."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    pass

from producer.cli.app import (
    AsJson,
    app,
    check_dir,
    err,
    escape,
)


@app.command()
def team(
    goal: Annotated[str, typer.Argument(help="What the team is to deliver")],
    model: Annotated[str, typer.Option("--model", help="Label of the model component in the tree the agents use")],
    team_size: Annotated[int, typer.Option("--team-size", min=1, max=50, help="Agents in the team")] = 3,
    tree: Annotated[Path, typer.Option("--tree", help="Config tree the agents are written into")] = Path("."),
    write: Annotated[
        Path | None, typer.Option("--write", help="Workflow file to write (default: TREE/workflows/NAME.yaml)")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Workflow name and agents' label prefix")] = None,
    run_it: Annotated[bool, typer.Option("--run", help="Run the workflow once written (as `producer run`)")] = False,
    standin_llm: Annotated[bool, typer.Option("--standin-llm", help="With --run: start the stand-in endpoint")] = False,
    as_json: AsJson = False,
) -> None:
    """Write a workflow for GOAL with a team of agents in roles chosen for its size (1: a generalist;
    3: researcher, analyst, writer; 5: and a critic and an editor; more: parallel researchers)."""
    import yaml

    from shared.core.team_plan import slug, team_workflow

    check_dir(tree)
    agents, workflow = team_workflow(goal, team_size, model, name)
    folder = tree / "agents" / slug(workflow["name"])
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for label, doc in agents.items():
        # the label begins with --name, which may hold anything: the file name keeps only what is safe
        path = folder / f"{re.sub(r'[^A-Za-z0-9_-]+', '-', label).strip('-') or 'agent'}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        written.append(str(path))
    target = write or tree / "workflows" / f"{slug(workflow['name'])}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(workflow, sort_keys=False, width=100), encoding="utf-8")
    if as_json and not run_it:
        typer.echo(
            json.dumps({"workflow": str(target), "agents": written, "tasks": [t["id"] for t in workflow["tasks"]]})
        )
    elif not as_json:
        err().print(
            f"Wrote {escape(str(target))} ({len(workflow['tasks'])} tasks) and {len(written)} agent(s) in {escape(str(folder))}."
        )
    if run_it:
        from producer.cli.runs import run

        run(target, tree=tree, standin_llm=standin_llm, as_json=as_json)
