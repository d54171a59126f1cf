"""`producer team`: a team of agents and a workflow written for a goal."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from producer.cli.app import (
    AsJson,
    app,
    check_dir,
    err,
    escape,
)
from shared.core.exceptions import InvalidInput

if TYPE_CHECKING:
    from shared.core.tree import Tree


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
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite files there that differ from what this writes")
    ] = False,
    run_it: Annotated[bool, typer.Option("--run", help="Run the workflow once written (as `producer run`)")] = False,
    standin_llm: Annotated[bool, typer.Option("--standin-llm", help="With --run: start the stand-in endpoint")] = False,
    as_json: AsJson = False,
) -> None:
    """Write a workflow for GOAL with a team of agents in roles chosen for its size (1: a generalist;
    3: researcher, analyst, writer; 5: and a critic and an editor; more: parallel researchers).
    Everything is checked before the first file is written: the model must be a model component
    of the tree, and no file written may take the place of a folder or of another component, nor
    replace a file that says something else (a hand-written workflow, an agent edited since)
    unless --force."""
    import yaml

    from shared.core.team_plan import slug, team_workflow

    problem = _option_problem(goal, model, name, standin_llm and not run_it)
    if problem:
        raise InvalidInput(problem)
    check_dir(tree)
    agents, workflow = team_workflow(goal, team_size, model, name)
    folder = tree / "agents" / slug(workflow["name"])
    files = _agent_files(folder, agents)
    target = write or tree / "workflows" / f"{slug(workflow['name'])}.yaml"
    files[target] = (None, yaml.safe_dump(workflow, sort_keys=False, width=100))
    _check_team(tree, model, files, write)
    if not force:
        _check_unchanged(files, write)
    _write_files(files)
    written = {"workflow": str(target), "agents": _agents(files), "tree": str(tree), "tasks": _task_ids(workflow)}
    _tell(written, folder, as_json, run_it)
    if run_it:
        from producer.cli.runs import run

        run(target, tree=tree, standin_llm=standin_llm, as_json=as_json)


def _tell(written: dict[str, Any], folder: Path, as_json: bool, run_it: bool) -> None:
    """What was written: a line on stderr, or with --json the JSON (with --run, the run's JSON is the answer)."""
    if not as_json:
        err().print(
            f"Wrote {escape(written['workflow'])} ({len(written['tasks'])} tasks) and {len(written['agents'])} "
            f"agent(s) in {escape(str(folder))}."
        )
    elif not run_it:
        typer.echo(json.dumps(written))


def _agents(files: dict[Path, tuple[str | None, str]]) -> list[str]:
    """The agents' files among those written."""
    return [str(p) for p, (label, _) in files.items() if label is not None]


def _task_ids(workflow: dict[str, Any]) -> list[str]:
    return [t["id"] for t in workflow["tasks"]]


def _option_problem(goal: str, model: str, name: str | None, standin_without_run: bool) -> str | None:
    """What is wrong with the options, in the order they are checked (None: nothing)."""
    problems = (
        (not goal.strip(), f"GOAL {goal!r} is blank: say what the team is to deliver"),
        (not model.strip(), f"--model {model!r} is blank: give the label of a model component in the tree"),
        (
            name is not None and not name.strip(),
            f"--name {name!r} is blank: give a workflow name, or leave --name out (the goal's)",
        ),
        (
            standin_without_run,
            "--standin-llm starts the stand-in endpoint for --run: give --run too, or leave it out",
        ),
    )
    return next((said for wrong, said in problems if wrong), None)


def _agent_files(folder: Path, agents: dict[str, dict[str, object]]) -> dict[Path, tuple[str | None, str]]:
    """path -> (the label it holds, its text), for each agent's file in `folder`."""
    import yaml

    files: dict[Path, tuple[str | None, str]] = {}
    for label, doc in agents.items():
        files[folder / f"{_safe_name(label)}.yaml"] = (label, yaml.safe_dump(doc, sort_keys=False))
    return files


def _safe_name(label: str) -> str:
    # the label begins with --name, which may hold anything: the file name keeps only what is safe
    return re.sub(r"[^A-Za-z0-9_-]+", "-", label).strip("-") or "agent"


def _write_files(files: dict[Path, tuple[str | None, str]]) -> None:
    try:
        for path, (_, text) in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot write {exc.filename or path}: {exc.strerror or exc}") from exc


def _check_team(tree: Path, model: str, files: dict[Path, tuple[str | None, str]], write: Path | None) -> None:
    """Refuse (InvalidInput) what would go wrong, before anything is written: a model that is no
    model component of the tree, an agent label another file of the tree holds, a file to write
    where a folder is, below a file, or in the place of another component's file."""
    from shared.core.team_plan import model_problem

    root = tree.resolve()
    built = _built(root)
    problem = model_problem(built, model, f"the tree {tree}")
    if problem:
        raise InvalidInput(problem)
    for path, (label, _) in files.items():
        said = f"--write {write}" if label is None and write is not None else str(path)
        _check_place(path, label, said)
        _check_component(said, path, label, _relative(path, root), built)


def _check_unchanged(files: dict[Path, tuple[str | None, str]], write: Path | None) -> None:
    """Refuse to replace a file that holds something else than what this writes: the same team
    written again is a no-op, a hand-written or edited file is the user's."""
    for path, (label, text) in files.items():
        try:
            there = path.read_text(encoding="utf-8") if path.is_file() else None
        except (OSError, UnicodeDecodeError):
            there = ""  # unreadable: not what this writes either
        if there is not None and there != text:
            said = f"--write {write}" if label is None and write is not None else str(path)
            raise InvalidInput(
                f"{said}: {path} exists and says something else than this would write "
                "(written by hand, or edited since); --force overwrites it"
            )


def _built(root: Path) -> Tree:
    """The tree at `root` as it is now, scanned and built as a sync would."""
    from producer.scanner import default_cache_path, scan
    from shared.core.tree import build_tree
    from shared.settings import environment, load_settings, scan_limits, tree_limits

    settings = load_settings()
    result = scan(root, default_cache_path(root, settings.cache_dir), limits=scan_limits(settings))
    return build_tree(result.documents, environment(), result.facts, limits=tree_limits(settings))


def _check_component(said: str, path: Path, label: str | None, rel: str | None, built: Tree) -> None:
    """Refuse a file (at `rel` in the tree) that would take the place of another component's
    file, or an agent label that another file of the tree holds."""
    there = _held_at(rel, built)
    if there is not None and there != label:
        raise InvalidInput(f"{said}: {path} holds the component {there!r}, which this would overwrite")
    other = _held_elsewhere(label, rel, built)
    if other is not None:
        raise InvalidInput(f"the agent label {label!r} is already in the tree ({other}): --name names another team")


def _held_at(rel: str | None, built: Tree) -> str | None:
    """The label the tree's file at `rel` holds; None for no such file."""
    held = {node.path: name for name, node in built.nodes.items()}  # relpath -> the label its file holds
    return held.get(rel) if rel is not None else None


def _held_elsewhere(label: str | None, rel: str | None, built: Tree) -> str | None:
    """Where in the tree another file holds the label; None where none does."""
    if label is None or label not in built.nodes or built.nodes[label].path == rel:
        return None
    return built.nodes[label].path


def _check_place(path: Path, label: str | None, said: str) -> None:
    """Refuse a file to write where a folder is, or below a file."""
    if path.is_dir():
        why = "name the workflow file to write in it" if label is None else f"the agent {label!r} goes there"
        raise InvalidInput(f"{said}: {path} is a folder; {why}")
    above = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if above is not None:
        raise InvalidInput(f"{said}: {above} is a file, not a folder")


def _relative(path: Path, root: Path) -> str | None:
    """The path's place in the tree, as the tree's nodes say it; None outside the tree."""
    absolute = path.resolve()
    return absolute.relative_to(root).as_posix() if absolute.is_relative_to(root) else None
