"""`producer pull`: Studio's rows written back into a tree."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from producer import embedded
from producer.cli.app import (
    AsJson,
    Exit,
    Gallery,
    LocalStudio,
    StudioUrl,
    StudioUser,
    app,
    console,
    err,
    escape,
    start_local_studio,
)
from shared.core import json_text
from shared.core.exceptions import InvalidInput


@app.command()
def pull(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Config tree to write into (created when missing)")],
    team: Annotated[
        list[str] | None,
        typer.Option(
            "--team",
            metavar="LABEL",
            help="Pull this team (repeatable; default: the tree's own teams, every row into an empty tree)",
        ),
    ] = None,
    every_row: Annotated[
        bool, typer.Option("--all", help="Pull every team row of the user, not only the tree's own teams")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be written; write nothing")] = False,
    studio_url: StudioUrl = None,
    studio_user_id: StudioUser = None,
    gallery: Gallery = None,
    local_studio: LocalStudio = False,
    as_json: AsJson = False,
) -> None:
    """Write teams (and the tree's gallery entry) from Studio into the tree: one component per
    file, shared parts as $ref, secrets as ${VAR}; files that already say the same are untouched."""
    from producer.pull import pull as pull_tree
    from producer.studio_state import unavailable
    from shared.ports import StudioError
    from shared.settings import environment, load_settings, with_overrides

    if directory.exists() and not directory.is_dir():
        raise InvalidInput(f"{directory} is not a directory")
    if every_row and team:
        raise InvalidInput("--all and --team: choose one (--all pulls every team row, --team only those named)")
    for label in team or []:
        if not label.strip():
            raise InvalidInput(f"--team {label!r} is blank: give the label of a team row")
    settings = load_settings(studio_url=studio_url, studio_user_id=studio_user_id)
    try:
        with embedded.LocalServices() as services:
            if local_studio:
                settings = with_overrides(settings, studio_url=start_local_studio(settings, services))
            layout, others, failed = pull_tree(
                directory, settings, environment(), team or [], gallery, dry_run, every_row
            )
    except StudioError as exc:
        raise unavailable(settings.studio_url, exc) from exc
    except OSError as exc:
        raise InvalidInput(f"cannot write into {directory}: {exc}") from exc
    files = [
        {
            "path": f.path,
            "label": f.label,
            "action": f.action,
            **({"error": failed[f.path]} if f.path in failed else {}),
        }
        for f in layout.files
    ]
    code = Exit.PARTIAL if failed else Exit.OK
    if as_json:
        data = {"files": files, "variables": layout.variables, "warnings": layout.warnings, "not_pulled": others}
        typer.echo(json_text.dumps(data, indent=True))
        raise typer.Exit(code)
    verb = {"create": "would create" if dry_run else "created", "update": "would update" if dry_run else "updated"}
    for f in layout.changed():
        if f.path in failed:
            err().print(
                f"[red]error:[/red] could not write {escape(f.path)} ({escape(f.label)}): {escape(failed[f.path])}"
            )
        else:
            console().print(f"{verb[f.action]} {escape(f.path)} ({escape(f.label)})", highlight=False)
    unchanged = len(layout.files) - len(layout.changed())
    written = len(layout.changed()) - len(failed)
    console().print(
        f"{written} file(s) {'to write' if dry_run else 'written'}, {unchanged} unchanged"
        + (f", {len(failed)} could not be written" if failed else "")
    )
    for warning in layout.warnings:
        err().print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)
    if others:
        err().print(f"Not pulled (not in the tree; --team LABEL or --all pulls them): {escape(', '.join(others))}")
    if layout.variables:
        console().print("Set these variables before syncing (secrets are never written to files):")
        for var, places in sorted(layout.variables.items()):
            console().print(f"  {escape(var)}  ({escape(', '.join(places))})", highlight=False)
    raise typer.Exit(code)
