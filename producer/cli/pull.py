"""`producer pull`: Studio's rows written back into a tree."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from producer import embedded
from producer.cli import app as cli
from producer.cli.common import AS_CONFIGURED, Target, echo_json, target_options, with_local_studio
from shared.core.exceptions import InvalidInput

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

    from producer.pull import Templates
    from shared.core.pull_layout import FileWrite, Layout
    from shared.settings import Settings


@cli.app.command()
@target_options(redis=False)
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
    target: Target = AS_CONFIGURED,
    local_studio: cli.LocalStudio = False,
    as_json: cli.AsJson = False,
) -> None:
    """Write teams (and the tree's gallery entry) from Studio into the tree: one component per
    file, shared parts as $ref, secrets as ${VAR}; files that already say the same are untouched."""
    _check_pull(directory, team, every_row)
    layout, others, failed = _pull(directory, team or [], every_row, dry_run, target, local_studio)
    if as_json:
        echo_json(_pull_json(layout, others, failed))
    else:
        _print_writes(layout, failed, dry_run)
        _print_notes(layout, others)
    raise typer.Exit(cli.Exit.PARTIAL if failed else cli.Exit.OK)


def _check_pull(directory: Path, team: list[str] | None, every_row: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise InvalidInput(f"{directory} is not a directory")
    # a folder to create below a file: said before Studio is asked
    blocking = next((p for p in directory.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise InvalidInput(f"{directory}: {blocking} is a file, not a folder")
    if every_row and team:
        raise InvalidInput("--all and --team: choose one (--all pulls every team row, --team only those named)")
    _check_labels(team or [])


def _check_labels(team: list[str]) -> None:
    for label in team:
        if not label.strip():
            raise InvalidInput(f"--team {label!r} is blank: give the label of a team row")


def _pull(
    directory: Path,
    team: list[str],
    every_row: bool,
    dry_run: bool,
    target: Target,
    local_studio: bool,
) -> tuple[Layout, list[str], dict[str, str]]:
    """The pull done (or, with `dry_run`, only planned): the layout, the rows left out, the files not written."""
    from producer.pull import pull as pull_tree
    from producer.studio_state import unavailable
    from shared.ports import StudioError
    from shared.settings import environment

    settings = target.settings()
    try:
        with embedded.LocalServices() as services:
            settings = with_local_studio(settings, services, local_studio)
            templates = _templates(settings, services)
            return pull_tree(directory, settings, environment(), team, target.gallery, dry_run, every_row, templates)
    except StudioError as exc:
        raise unavailable(settings.studio_url, exc) from exc
    except OSError as exc:
        raise InvalidInput(f"cannot write into {directory}: {exc}") from exc


def _templates(settings: Settings, services: embedded.LocalServices) -> Templates:
    """What the syncs into this Studio recorded of each component's file (its `${VAR}`s), read from
    the configured Redis, or the embedded default's when it holds data; else nothing is known."""
    from shared.core.exceptions import AgentqError, ServiceUnavailable
    from shared.core.hashing import namespace

    def read(labels: Collection[str]) -> Mapping[str, object]:
        if settings.redis_url is None and not (settings.cache_dir / "redis").is_dir():
            return {}
        try:
            with cli.redis_session(settings, services, quiet=True) as (store, _):
                try:
                    return store.templates(namespace(settings.studio_url, settings.studio_user_id), labels)
                except store.errors as exc:
                    raise ServiceUnavailable(f"Redis: {exc}") from exc
        except AgentqError as exc:
            cli.err().print(
                f"[yellow]warning:[/yellow] what the syncs recorded of the files is out of reach ({cli.escape(str(exc))}): "
                "placeholders come from the tree's own files only",
                soft_wrap=True,
            )
            return {}

    return read


def _pull_json(layout: Layout, others: list[str], failed: dict[str, str]) -> dict[str, object]:
    files = _files_json(layout, failed)
    return {"files": files, "variables": layout.variables, "warnings": layout.warnings, "not_pulled": others}


def _files_json(layout: Layout, failed: dict[str, str]) -> list[dict[str, str]]:
    return [
        {
            "path": f.path,
            "label": f.label,
            "action": f.action,
            **({"error": failed[f.path]} if f.path in failed else {}),
        }
        for f in layout.files
    ]


def _print_writes(layout: Layout, failed: dict[str, str], dry_run: bool) -> None:
    """A line per file written (or that would be), or not written; then the counts."""
    for f in layout.changed():
        _print_write(f, failed.get(f.path), dry_run)
    unchanged = len(layout.files) - len(layout.changed())
    written = len(layout.changed()) - len(failed)
    cli.console().print(
        f"{written} file(s) {'to write' if dry_run else 'written'}, {unchanged} unchanged"
        + (f", {len(failed)} could not be written" if failed else "")
    )


def _print_write(f: FileWrite, failure: str | None, dry_run: bool) -> None:
    from producer.report import clipped  # a label may be thousands of characters: cut as tables cut it

    if failure is not None:
        cli.err().print(
            f"[red]error:[/red] could not write {cli.escape(f.path)} ({clipped(f.label)}): {cli.escape(failure)}"
        )
        return
    verb = f"would {f.action}" if dry_run else f"{f.action}d"  # created, updated
    cli.console().print(f"{verb} {cli.escape(f.path)} ({clipped(f.label)})", highlight=False)


def _print_notes(layout: Layout, others: list[str]) -> None:
    """The warnings, the rows left out, and the variables to set."""
    for warning in layout.warnings:
        cli.err().print(f"[yellow]warning:[/yellow] {cli.escape(warning)}", soft_wrap=True)
    named = [label for label in others if label]  # a row without a label is among the warnings
    if named:
        cli.err().print(
            f"Not pulled (not in the tree; --team LABEL or --all pulls them): {cli.escape(', '.join(named))}"
        )
    _print_variables(layout.variables)


def _print_variables(variables: dict[str, list[str]]) -> None:
    if not variables:
        return
    cli.console().print("Set these variables before syncing (the files name them; secrets are never written to files):")
    for var, places in sorted(variables.items()):
        cli.console().print(f"  {cli.escape(var)}  ({cli.escape(', '.join(places))})", highlight=False)
