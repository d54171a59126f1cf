"""`producer plan` and `producer sync`: what a sync would do, and doing it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from producer import embedded
from shared.core import json_text
from shared.core.exceptions import InvalidInput

if TYPE_CHECKING:
    from producer.recovery import Watchdog
    from producer.sync_run import Prepared
    from shared.ports import Dispatcher, RunStore

from producer.cli.app import (
    AsJson,
    Gallery,
    LocalStudio,
    RedisUrl,
    StudioUrl,
    StudioUser,
    app,
    check_dir,
    check_seconds,
    console,
    dispatcher_for,
    err,
    escape,
    interruptible,
    redis_session,
    start_local_studio,
    start_local_worker,
)


def _plan_json(prepared: Prepared) -> dict[str, Any]:
    plan, tree = prepared.plan, prepared.tree
    by_change: dict[str, list[str]] = {}
    for label, change in sorted(plan.changes.items()):
        by_change.setdefault(change, []).append(label)
    return {
        "tree": plan.tree_name,
        "gallery": plan.gallery_name,
        "changes": {k: by_change.get(k, []) for k in ("new", "changed", "unchanged", "drifted", "invalid", "skipped")},
        "drifted": {label: d.reason for label, d in sorted(prepared.studio.drift.items())},
        "prune": [{"label": w.label, "row_id": w.row_id, "path": w.path} for w in prepared.studio.prune],
        "prune_gallery": prepared.studio.prune_gallery,
        "studio_error": prepared.studio.error,
        "waves": [[lbl for batch in wave for lbl in batch] for wave in plan.waves],
        "gallery_write": plan.gallery_needed,
        "errors": [e.model_dump() for e in tree.errors],
        "skipped": {lbl: reason for lbl, reason in tree.skipped.items()},
        "ignored_files": prepared.scan.skipped,
        "files": len(prepared.scan.documents),
        "files_parsed": prepared.scan.parsed,
    }


def _print_plan(data: dict[str, Any]) -> None:
    from producer.report import clipped

    changes = data["changes"]
    console().print(
        f"[bold]{escape(data['tree'])}[/bold]: {data['files']} files ({data['files_parsed']} read, the rest unchanged on disk)"
    )
    console().print("  " + ", ".join(f"{k}: {len(v)}" for k, v in changes.items()))
    for i, wave in enumerate(data["waves"]):
        console().print(
            f"  wave {i + 1}: {len(wave)} component(s): {', '.join(map(clipped, wave[:8]))}{' ...' if len(wave) > 8 else ''}",
            soft_wrap=True,
        )
    console().print(
        f"  gallery entry {escape(repr(data['gallery']))}: {'write' if data['gallery_write'] else 'unchanged'}"
    )
    for e in data["errors"]:
        where = f"{e['path']}: {e['field'] + ': ' if e['field'] else ''}"
        console().print(f"  [red]error[/red] {escape(where + e['message'])}", soft_wrap=True)
    for label, reason in data["skipped"].items():
        console().print(f"  [yellow]skipped[/yellow] {escape(label)}: {escape(reason)}", soft_wrap=True)
    for path, reason in data["ignored_files"].items():
        console().print(f"  [dim]ignored {escape(path)}: {escape(reason)}[/dim]", soft_wrap=True)
    for label, reason in data["drifted"].items():
        console().print(
            f"  [yellow]drifted[/yellow] {escape(label)}: {escape(reason)}; a sync leaves it alone (--force overwrites)",
            soft_wrap=True,
        )
    for row in data["prune"]:
        console().print(
            f"  [magenta]prune[/magenta] {escape(row['label'])}: team row {row['row_id']} "
            f"({escape(row['path'])} is gone); `sync --prune` deletes it",
            soft_wrap=True,
        )
    if data["prune_gallery"] is not None:
        console().print(
            f"  [magenta]prune[/magenta] gallery entry {escape(str(data['prune_gallery']))}: nothing left to put in it"
        )
    if data["studio_error"]:
        console().print(f"  [yellow]warning[/yellow] {escape(data['studio_error'])}", soft_wrap=True)


def _show_plan(prepared: Prepared, as_json: bool) -> NoReturn:
    data = _plan_json(prepared)
    if as_json:
        typer.echo(json_text.dumps(data, indent=True))
    else:
        _print_plan(data)
    raise typer.Exit(1 if data["errors"] else 0)


@app.command()
def plan(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Config tree to plan")],
    redis_url: RedisUrl = None,
    studio_url: StudioUrl = None,
    studio_user_id: StudioUser = None,
    gallery: Gallery = None,
    local_studio: LocalStudio = False,
    as_json: AsJson = False,
) -> None:
    """Show what a sync would do: new, changed, unchanged and invalid components, and the waves."""
    from producer.sync_run import prepare
    from shared.settings import load_settings, with_overrides

    check_dir(directory)
    settings = load_settings(redis_url=redis_url, studio_url=studio_url, studio_user_id=studio_user_id)
    with embedded.LocalServices() as services:
        if local_studio:
            settings = with_overrides(settings, studio_url=start_local_studio(settings, services))
        with redis_session(settings, services, quiet=as_json) as (store, settings):
            prepared = prepare(directory, settings, store, gallery)
    _show_plan(prepared, as_json)


@app.command()
def sync(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Config tree to sync")],
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Enqueue, print the run id and return")] = False,
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
    timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds to wait for the run at most (default: as long as it moves; it fails when no node ends for STALL_SECONDS)"
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every component in the summary")] = False,
    redis_url: RedisUrl = None,
    studio_url: StudioUrl = None,
    studio_user_id: StudioUser = None,
    gallery: Gallery = None,
    as_json: AsJson = False,
) -> None:
    """Validate the tree, register every component with AutoGen Studio through the workers, report."""
    from producer import pipeline
    from producer.progress import follow_run
    from producer.report import render_report, succeeded
    from producer.sync_run import remember_if_clean, wait
    from shared.settings import check_store, load_settings, with_overrides

    check_dir(directory)
    check_seconds("--timeout", timeout, finite=False)
    settings = load_settings(redis_url=redis_url, studio_url=studio_url, studio_user_id=studio_user_id)
    check_store(settings)  # before a local Studio is started for nothing
    embedded_default = settings.redis_url is None
    if embedded_default and no_wait:
        raise InvalidInput("--no-wait needs REDIS_URL: the embedded Redis and worker stop when this command ends")
    with embedded.LocalServices() as services:
        if local_studio:
            settings = with_overrides(settings, studio_url=start_local_studio(settings, services))
        with redis_session(settings, services, quiet=False) as (store, settings):

            def before_submit(prepared: Prepared) -> bool:
                if dry_run:
                    _show_plan(prepared, as_json)
                if _nothing_to_sync(prepared):
                    _say_nothing_to_sync(directory, prepared, as_json)
                    return False
                return True

            def dispatcher() -> Dispatcher:
                if embedded_default:
                    start_local_worker(settings, services)
                return dispatcher_for(settings)

            def show(store: RunStore, run_id: str, timeout: float | None, watch: Watchdog) -> None:
                with interruptible(run_id, embedded_default):
                    if as_json:
                        wait(store, run_id, timeout=timeout, watch=watch)
                    else:
                        follow_run(store, run_id, err(), timeout, watch)

            outcome = pipeline.sync(
                directory,
                settings,
                store,
                dispatcher,
                _warn,
                gallery=gallery,
                force=force,
                prune=prune,
                timeout=timeout,
                before_submit=before_submit,
                wait_for_it=not no_wait,
                show=show,
            )
            if outcome.run_id is None:
                return
            if no_wait:
                typer.echo(json.dumps({"run_id": outcome.run_id}) if as_json else outcome.run_id)
                return
            report = outcome.report
            assert report is not None
            if not (
                embedded_default
                or force
                or prune
                or local_studio
                or gallery
                or redis_url
                or studio_url
                or studio_user_id
            ):
                remember_if_clean(outcome.prepared, settings, store, outcome.run_id, report)
    if as_json:
        typer.echo(json_text.dumps(report, indent=True))
    else:
        render_report(console(), report, verbose)
    raise typer.Exit(0 if succeeded(report) else 1)


def _nothing_to_sync(prepared: Prepared) -> bool:
    """No component file in the tree (none broken either), and no row of an earlier sync to prune."""
    tree, scanned, view = prepared.tree, prepared.scan, prepared.studio
    return not (
        tree.nodes or tree.errors or tree.broken_files or scanned.unread or view.prune or view.prune_gallery is not None
    )


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
        typer.echo(json_text.dumps(data, indent=True))


def _warn(line: str) -> None:
    err().print(f"[yellow]warning:[/yellow] {escape(line)}", soft_wrap=True)
