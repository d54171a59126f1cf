"""`producer plan` and `producer sync`: what a sync would do, and doing it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from producer import embedded
from shared.core.exceptions import InvalidInput

if TYPE_CHECKING:
    from producer.pipeline import Show, SyncOutcome
    from producer.recovery import Watchdog
    from producer.studio_state import StudioView
    from producer.sync_run import Prepared
    from shared.ports import RunStore

from producer.cli.app import (
    AsJson,
    LocalStudio,
    app,
    check_dir,
    check_seconds,
    console,
    err,
    escape,
    redis_session,
)
from producer.cli.common import (
    AS_CONFIGURED,
    NO_WAIT_EMBEDDED,
    Flower,
    NoWait,
    Target,
    Timeout,
    check_flower,
    echo_json,
    echo_run_id,
    local_dispatcher,
    target_options,
    wait_for_run,
    with_local_studio,
)


def _plan_json(prepared: Prepared) -> dict[str, Any]:
    plan, tree = prepared.plan, prepared.tree
    return {
        "tree": plan.tree_name,
        "gallery": plan.gallery_name,
        "changes": _by_change(plan.changes),
        **_studio_json(prepared.studio),
        "waves": [[lbl for batch in wave for lbl in batch] for wave in plan.waves],
        "gallery_write": plan.gallery_needed,
        "errors": [e.model_dump() for e in tree.errors],
        # valid, but not this tree's to write (another tree's Studio row): the sync fails them
        "refused": {
            lbl: str(plan.states[lbl].error)
            for lbl, change in sorted(plan.changes.items())
            if change == "invalid" and lbl in tree.nodes and lbl not in tree.invalid
        },
        "skipped": dict(tree.skipped),
        "ignored_files": prepared.scan.skipped,
        "files": len(prepared.scan.documents),
        "files_parsed": prepared.scan.parsed,
    }


def _by_change(changes: dict[str, str]) -> dict[str, list[str]]:
    """The labels by their change, in order, every kind named."""
    by_change: dict[str, list[str]] = {k: [] for k in ("new", "changed", "unchanged", "drifted", "invalid", "skipped")}
    for label, change in sorted(changes.items()):
        if change in by_change:
            by_change[change].append(label)
    return by_change


def _studio_json(view: StudioView) -> dict[str, Any]:
    return {
        "drifted": {label: d.reason for label, d in sorted(view.drift.items())},
        "prune": [{"label": w.label, "row_id": w.row_id, "path": w.path} for w in view.prune],
        "prune_gallery": view.prune_gallery,
        "gallery_entry": view.gallery,
        "studio_error": view.error,
    }


# the plan's lists said one line an item: (key, the line for an item, with its key and value)
_PLAN_LINES: tuple[tuple[str, Callable[[str, str], str]], ...] = (
    ("refused", lambda label, reason: f"  [red]refused[/red] {escape(label)}: {escape(reason)}"),
    ("skipped", lambda label, reason: f"  [yellow]skipped[/yellow] {escape(label)}: {escape(reason)}"),
    ("ignored_files", lambda path, reason: f"  [dim]ignored {escape(path)}: {escape(reason)}[/dim]"),
    (
        "drifted",
        lambda label, reason: (
            f"  [yellow]drifted[/yellow] {escape(label)}: {escape(reason)}; a sync leaves it alone (--force overwrites)"
        ),
    ),
)


def _print_plan(data: dict[str, Any]) -> None:
    out = console()
    out.print(
        f"[bold]{escape(data['tree'])}[/bold]: {data['files']} files ({data['files_parsed']} read, the rest unchanged on disk)"
    )
    out.print("  " + ", ".join(f"{k}: {len(v)}" for k, v in data["changes"].items()))
    _print_waves(data["waves"])
    out.print(f"  gallery entry {escape(repr(data['gallery']))}: {_gallery_line(data)}")
    for e in data["errors"]:
        where = f"{e['path']}: {e['field'] + ': ' if e['field'] else ''}"
        out.print(f"  [red]error[/red] {escape(where + e['message'])}", soft_wrap=True)
    for key, line in _PLAN_LINES:
        for name, reason in data[key].items():
            out.print(line(name, reason), soft_wrap=True)
    _print_prune(data)
    if data["studio_error"]:
        out.print(f"  [yellow]warning[/yellow] {escape(data['studio_error'])}", soft_wrap=True)


def _gallery_line(data: dict[str, Any]) -> str:
    from shared.core.drift import EntryState

    if not data["gallery_write"]:
        return "unchanged"
    why = {EntryState.GONE: "deleted in Studio", EntryState.CHANGED: "written since the sync wrote it"}
    return "write" + (f" ({why[data['gallery_entry']]})" if data["gallery_entry"] in why else "")


def _print_waves(waves: list[list[str]]) -> None:
    from producer.report import clipped

    for i, wave in enumerate(waves):
        console().print(
            f"  wave {i + 1}: {len(wave)} component(s): {', '.join(map(clipped, wave[:8]))}{' ...' if len(wave) > 8 else ''}",
            soft_wrap=True,
        )


def _print_prune(data: dict[str, Any]) -> None:
    for row in data["prune"]:
        console().print(
            f"  [magenta]prune[/magenta] {escape(row['label'])}: team row {row['row_id']} "
            f"(no file of the tree has that label now; it was in {escape(row['path'])}); `sync --prune` deletes it",
            soft_wrap=True,
        )
    if data["prune_gallery"] is not None:
        console().print(
            f"  [magenta]prune[/magenta] gallery entry {escape(str(data['prune_gallery']))}: nothing left to put in it"
        )


def _show_plan(prepared: Prepared, as_json: bool) -> NoReturn:
    data = _plan_json(prepared)
    if as_json:
        echo_json(data)
    else:
        _print_plan(data)
    raise typer.Exit(1 if data["errors"] or data["refused"] else 0)


@app.command()
@target_options()
def plan(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Config tree to plan")],
    target: Target = AS_CONFIGURED,
    local_studio: LocalStudio = False,
    as_json: AsJson = False,
) -> None:
    """Show what a sync would do: new, changed, unchanged and invalid components, and the waves."""
    from producer.sync_run import prepare

    check_dir(directory)
    settings = target.settings()
    with embedded.LocalServices() as services:
        settings = with_local_studio(settings, services, local_studio)
        with redis_session(settings, services, quiet=as_json) as (store, settings):
            prepared = prepare(directory, settings, store, target.gallery)
    _show_plan(prepared, as_json)


@app.command()
@target_options()
def sync(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Config tree to sync")],
    no_wait: NoWait = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan only; enqueue nothing")] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Ignore the result cache and overwrite rows edited in Studio since the last sync (drifted)"
        ),
    ] = False,
    prune: Annotated[
        bool,
        typer.Option("--prune", help="Delete the team rows this tree created whose components are gone from it"),
    ] = False,
    local_studio: LocalStudio = False,
    flower: Flower = False,
    timeout: Timeout = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every component in the summary")] = False,
    target: Target = AS_CONFIGURED,
    as_json: AsJson = False,
) -> None:
    """Validate the tree, register every component with AutoGen Studio through the workers, report."""
    from producer import pipeline
    from producer.sync_run import remember_if_clean
    from producer.walk import Walks
    from shared.settings import check_store

    check_dir(directory)
    check_seconds("--timeout", timeout, finite=False)
    settings = target.settings(flower=flower or None)
    check_store(settings)  # before a local Studio is started for nothing
    embedded_default = settings.redis_url is None
    if embedded_default and no_wait:
        raise InvalidInput(NO_WAIT_EMBEDDED)
    check_flower(flower, embedded_default)
    # the result cache is only kept for a plain sync of the configured Redis and Studio
    plain = not any((embedded_default, force, prune, local_studio, target.any_given()))
    with embedded.LocalServices() as services:
        settings = with_local_studio(settings, services, local_studio)
        with redis_session(settings, services, quiet=False) as (store, settings):
            outcome = pipeline.sync(
                directory,
                pipeline.Services(
                    settings,
                    store,
                    local_dispatcher(settings, services, embedded_default),
                    _warn,
                    walks=ctx.obj if isinstance(ctx.obj, Walks) else None,  # producer/cli/__init__.py's
                ),
                gallery=target.gallery,
                force=force,
                prune=prune,
                timeout=timeout,
                before_submit=lambda prepared: _before_submit(directory, prepared, dry_run, as_json),
                wait_for_it=not no_wait,
                show=_shower(as_json, embedded_default),
            )
            report = _report_of(outcome, no_wait, as_json)
            if report is None:
                return
            if plain:
                remember_if_clean(outcome.prepared, settings, store, str(outcome.run_id), report)
    _show_report(report, as_json, verbose)


def _report_of(outcome: SyncOutcome, no_wait: bool, as_json: bool) -> dict[str, Any] | None:
    """The run's report; None when no run was made, or with --no-wait (its run id said)."""
    if outcome.run_id is None:
        return None
    if no_wait:
        echo_run_id(outcome.run_id, as_json)
        return None
    assert outcome.report is not None
    return outcome.report


def _show_report(report: dict[str, Any], as_json: bool, verbose: bool) -> NoReturn:
    """The report, and the exit code: 0 when the sync succeeded."""
    from producer.report import render_report, succeeded

    if as_json:
        echo_json(report)
    else:
        render_report(console(), report, verbose)
    raise typer.Exit(0 if succeeded(report) else 1)


def _before_submit(directory: Path, prepared: Prepared, dry_run: bool, as_json: bool) -> bool:
    """--dry-run shows the plan and exits; a tree with nothing to sync is said, and no run made."""
    if dry_run:
        _show_plan(prepared, as_json)
    from producer.pipeline import nothing_to_sync

    if nothing_to_sync(prepared):
        _say_nothing_to_sync(directory, prepared, as_json)
        return False
    return True


def _shower(as_json: bool, embedded_default: bool) -> Show:
    """How `sync` shows the wait: quietly for --json, else the progress on stderr."""

    def follow_run(store: RunStore, run_id: str, timeout: float | None, watch: Watchdog) -> None:
        from producer.progress import follow_run  # rich's progress: imported once the run is under way

        follow_run(store, run_id, err(), timeout, watch)

    def show(store: RunStore, run_id: str, timeout: float | None, watch: Watchdog) -> None:
        follow = None if as_json else lambda: follow_run(store, run_id, timeout, watch)
        wait_for_run(store, run_id, timeout, watch, embedded_default, follow)

    return show


def _say_nothing_to_sync(directory: Path, prepared: Prepared, as_json: bool) -> None:
    """Exit 0, saying so (stderr, and with --json in the object): no run is made."""
    from producer.report import OUTCOMES

    workflows = prepared.tree.workflow_files
    if workflows:
        why = f"only {len(workflows)} workflow file(s), which sync leaves alone (`producer run FILE` runs one)"
    else:
        why = "no component files (YAML or JSON; hidden files and folders, and .producerignore's, are skipped)"
    message = f"Nothing to sync in {directory}: {why}."
    err().print(escape(message), soft_wrap=True)
    if as_json:
        data = {
            "run_id": None,
            "nothing_to_sync": True,
            "message": message,
            "tree": str(prepared.root),
            "gallery": prepared.plan.gallery_name,
            "counts": dict.fromkeys(OUTCOMES, 0),
            "nodes": {},
            "workflow_files": workflows,
        }
        echo_json(data)


def _warn(line: str) -> None:
    err().print(f"[yellow]warning:[/yellow] {escape(line)}", soft_wrap=True)
