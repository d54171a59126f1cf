"""`producer team`: a team of agents and a workflow written for a goal."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer

from producer.cli.app import (
    AsJson,
    app,
    check_dir,
    err,
    escape,
)
from shared.core.exceptions import InvalidInput


@app.command()
def team(
    goal: Annotated[str, typer.Argument(help="What the team is to deliver")],
    model: Annotated[str, typer.Option("--model", help="Label of the model component in the tree the agents use")],
    tree: Annotated[
        Path,
        typer.Option(
            "--tree", help="Config tree that holds the model; the agents and the workflow are written into it"
        ),
    ],
    team_size: Annotated[int, typer.Option("--team-size", min=1, max=50, help="Agents in the team")] = 3,
    write: Annotated[
        Path | None, typer.Option("--write", help="Workflow file to write (default: TREE/workflows/NAME.yaml)")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Workflow name and agents' label prefix")] = None,
    run_it: Annotated[bool, typer.Option("--run", help="Run the workflow once written (as `producer run`)")] = False,
    standin_llm: Annotated[bool, typer.Option("--standin-llm", help="With --run: start the stand-in endpoint")] = False,
    as_json: AsJson = False,
) -> None:
    """Write a workflow for GOAL with a team of agents in roles chosen for its size (1: a generalist;
    3: researcher, analyst, writer; 5: and a critic and an editor; more: parallel researchers).
    Everything is checked before the first file is written: the model must be a model component
    of the tree, and no file written may take the place of a folder or of another component."""
    import yaml

    from shared.core.team_plan import slug, team_workflow

    if not goal.strip():
        raise InvalidInput(f"GOAL {goal!r} is blank: say what the team is to deliver")
    if not model.strip():
        raise InvalidInput(f"--model {model!r} is blank: give the label of a model component in the tree")
    if name is not None and not name.strip():
        raise InvalidInput(f"--name {name!r} is blank: give a workflow name, or leave --name out (the goal's)")
    if standin_llm and not run_it:
        raise InvalidInput("--standin-llm starts the stand-in endpoint for --run: give --run too, or leave it out")
    check_dir(tree)
    agents, workflow = team_workflow(goal, team_size, model, name)
    folder = tree / "agents" / slug(workflow["name"])
    files: dict[Path, tuple[str | None, str]] = {}  # path -> (the label it holds, its text)
    for label, doc in agents.items():
        # the label begins with --name, which may hold anything: the file name keeps only what is safe
        path = folder / f"{re.sub(r'[^A-Za-z0-9_-]+', '-', label).strip('-') or 'agent'}.yaml"
        files[path] = (label, yaml.safe_dump(doc, sort_keys=False))
    target = write or tree / "workflows" / f"{slug(workflow['name'])}.yaml"
    files[target] = (None, yaml.safe_dump(workflow, sort_keys=False, width=100))
    _check_team(tree, model, files, write)
    try:
        for path, (_, text) in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot write {exc.filename or path}: {exc.strerror or exc}") from exc
    written = [str(p) for p, (label, _) in files.items() if label is not None]
    if as_json and not run_it:
        typer.echo(
            json.dumps(
                {
                    "workflow": str(target),
                    "agents": written,
                    "tree": str(tree),
                    "tasks": [t["id"] for t in workflow["tasks"]],
                }
            )
        )
    elif not as_json:
        err().print(
            f"Wrote {escape(str(target))} ({len(workflow['tasks'])} tasks) and {len(written)} agent(s) in {escape(str(folder))}."
        )
    if run_it:
        from producer.cli.runs import run

        run(target, tree=tree, standin_llm=standin_llm, as_json=as_json)


def _check_team(tree: Path, model: str, files: dict[Path, tuple[str | None, str]], write: Path | None) -> None:
    """Refuse (InvalidInput) what would go wrong, before anything is written: a model that is no
    model component of the tree, an agent label another file of the tree holds, a file to write
    where a folder is, below a file, or in the place of another component's file."""
    from producer.scanner import default_cache_path, scan
    from shared.core.team_plan import model_problem
    from shared.core.tree import build_tree
    from shared.settings import environment, load_settings, scan_limits, tree_limits

    settings = load_settings()
    root = tree.resolve()
    result = scan(root, default_cache_path(root, settings.cache_dir), limits=scan_limits(settings))
    built = build_tree(result.documents, environment().keys(), result.facts, limits=tree_limits(settings))
    problem = model_problem(built, model, f"the tree {tree}")
    if problem:
        raise InvalidInput(problem)
    held = {node.path: label for label, node in built.nodes.items()}  # relpath -> the label its file holds
    for path, (label, _) in files.items():
        said = f"--write {write}" if label is None and write is not None else str(path)
        if path.is_dir():
            why = "name the workflow file to write in it" if label is None else f"the agent {label!r} goes there"
            raise InvalidInput(f"{said}: {path} is a folder; {why}")
        for above in path.parents:
            if above.exists() and not above.is_dir():
                raise InvalidInput(f"{said}: {above} is a file, not a folder")
        absolute = path.resolve()
        rel = absolute.relative_to(root).as_posix() if absolute.is_relative_to(root) else None
        there = held.get(rel) if rel is not None else None
        if there is not None and there != label:
            raise InvalidInput(f"{said}: {path} holds the component {there!r}, which this would overwrite")
        if label is not None and label in built.nodes and built.nodes[label].path != rel:
            other = built.nodes[label].path
            raise InvalidInput(f"the agent label {label!r} is already in the tree ({other}): --name names another team")
