"""The `producer` commands (typer). Each imports what it uses when it runs, so that `--help` and
`--version` pay only for typer (producer/cli.py is the entry point)."""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from producer import embedded
from shared.core import json_text
from shared.core.exceptions import AgentqError, InvalidInput, ServiceUnavailable
from shared.core.run_model import RunKind, RunState
from shared.core.secrets import shown_url

if TYPE_CHECKING:
    from rich.console import Console

    from producer.sync_run import Prepared
    from shared.ports import Dispatcher, RunStore, Storage
    from shared.settings import Settings

app = typer.Typer(
    help="Sync AutoGen component trees into AutoGen Studio through Celery workers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@cache
def console() -> Console:
    from rich.console import Console

    return Console()


@cache
def err() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"producer (agentq) {version('agentq')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit")
    ] = False,
) -> None:
    """Sync AutoGen component trees into AutoGen Studio through Celery workers, and run workflows."""


class Exit:
    """Exit codes, one per kind of failure (README, "Exit codes")."""

    OK = 0
    PARTIAL = 1  # the run finished, but some components or tasks failed
    CONFIG = 2  # bad input or usage: nothing was enqueued
    UNAVAILABLE = 3  # Redis, Studio, a worker or another service could not be reached or started
    TIMEOUT = 4  # the run did not finish within --timeout


RedisUrl = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        help="Redis URL for run state, and the broker unless BROKER_URL is set (env REDIS_URL); unset: embedded local Redis",
    ),
]
StudioUrl = Annotated[str | None, typer.Option("--studio-url", help="AutoGen Studio base URL (env STUDIO_URL)")]
StudioUser = Annotated[
    str | None, typer.Option("--studio-user-id", help="Studio user id the rows belong to (env STUDIO_USER_ID)")
]


def _gallery_name(value: str | None) -> str | None:
    if value and not value.strip():  # "" is the default: the folder's name
        raise InvalidInput(f"--gallery {value!r}: a gallery entry's name cannot be blank")
    return value


Gallery = Annotated[
    str | None,
    typer.Option(
        "--gallery", help="Gallery entry name for the tree (default: the folder's name)", callback=_gallery_name
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output")]


def _store(settings: Settings, url: str) -> Storage:
    from shared.adapters.redis.store import Store

    return Store.from_settings(settings, url)


@contextmanager
def _redis(settings: Settings, services: embedded.LocalServices, quiet: bool) -> Iterator[tuple[Storage, Settings]]:
    """The configured Redis, or (no REDIS_URL) an embedded one whose data persists in the cache dir;
    with the settings that name it."""
    from shared.settings import check_store, with_overrides

    check_store(settings)  # no embedded Redis for a cluster's broker
    url = settings.redis_url
    if url is None:
        data_dir = settings.cache_dir / "redis"
        url, proc = embedded.start_redis(data_dir, persist=True)
        services.add_process(proc)
        settings = with_overrides(settings, redis_url=url)
        if not quiet:
            err().print(
                f"No REDIS_URL set: started an embedded Redis at {url} (data in {data_dir}); it stops when this command ends."
            )
    store = _store(settings, url)
    try:
        store.ping()
    except store.errors as exc:
        raise ServiceUnavailable(f"Redis at {shown_url(url)} is unreachable: {exc}") from exc
    yield store, settings


def _check_seconds(option: str, value: float | None, finite: bool = True) -> None:
    """A number of seconds above 0 (`inf` too, where `finite` is false), or InvalidInput naming the option."""
    if value is not None and (math.isnan(value) or value <= 0 or (finite and math.isinf(value))):
        raise InvalidInput(f"{option} {value:g}: expected a number of seconds above 0")


def _check_dir(directory: Path) -> None:
    if not directory.is_dir():
        raise InvalidInput(f"{directory} is not a directory")


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
    directory: Annotated[Path, typer.Argument(help="Config tree to plan")],
    redis_url: RedisUrl = None,
    studio_url: StudioUrl = None,
    studio_user_id: StudioUser = None,
    gallery: Gallery = None,
    as_json: AsJson = False,
) -> None:
    """Show what a sync would do: new, changed, unchanged and invalid components, and the waves."""
    from producer.sync_run import prepare
    from shared.settings import load_settings

    _check_dir(directory)
    settings = load_settings(redis_url=redis_url, studio_url=studio_url, studio_user_id=studio_user_id)
    with embedded.LocalServices() as services, _redis(settings, services, quiet=as_json) as (store, settings):
        prepared = prepare(directory, settings, store, gallery)
    _show_plan(prepared, as_json)


@app.command()
def sync(
    directory: Annotated[Path, typer.Argument(help="Config tree to sync")],
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
    local_studio: Annotated[
        bool,
        typer.Option("--local-studio", help="Start a local AutoGen Studio for this sync (data kept in the cache dir)"),
    ] = False,
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
    from producer.progress import follow_run
    from producer.report import render_report, run_report, succeeded
    from producer.sync_run import prepare, remember_if_clean, submit, wait
    from shared.adapters.redis.keys import STUDIO_QUEUE
    from shared.settings import check_store, load_settings, with_overrides

    _check_dir(directory)
    _check_seconds("--timeout", timeout, finite=False)
    settings = load_settings(redis_url=redis_url, studio_url=studio_url, studio_user_id=studio_user_id)
    check_store(settings)  # before a local Studio is started for nothing
    embedded_default = settings.redis_url is None
    if embedded_default and no_wait:
        raise InvalidInput("--no-wait needs REDIS_URL: the embedded Redis and worker stop when this command ends")
    with embedded.LocalServices() as services:
        if local_studio:
            url, proc = embedded.start_studio(
                settings.cache_dir / "studio", port=settings.local_studio_port, binary=settings.autogenstudio_bin
            )
            services.add_process(proc)
            settings = with_overrides(settings, studio_url=url)
            err().print(
                f"Started a local AutoGen Studio at {url} (data in {settings.cache_dir / 'studio'}); it stops when this command ends."
            )
        with _redis(settings, services, quiet=False) as (store, settings):
            prepared = prepare(directory, settings, store, gallery, force=force)
            if dry_run:
                _show_plan(prepared, as_json)
            _apply_prune(prepared, settings, store, prune)
            if embedded_default and prepared.plan.has_work:
                _start_local_worker(settings, services)
            dispatcher = _dispatcher(settings) if prepared.plan.has_work else None
            run_id = submit(prepared, settings, store, dispatcher)
            if no_wait:
                typer.echo(json.dumps({"run_id": run_id}) if as_json else run_id)
                return
            watch = _watchdog(store, run_id, settings, lambda: dispatcher or _dispatcher(settings), (STUDIO_QUEUE,))
            if as_json:
                wait(store, run_id, timeout=timeout, watch=watch)
            else:
                follow_run(store, run_id, err(), timeout, watch)
            report = run_report(store, run_id)
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
                remember_if_clean(prepared, settings, store, run_id, report)
    if as_json:
        typer.echo(json_text.dumps(report, indent=True))
    else:
        render_report(console(), report, verbose)
    raise typer.Exit(0 if succeeded(report) else 1)


@app.command()
def watch(
    directory: Annotated[Path, typer.Argument(help="Config tree to watch")],
    debounce: Annotated[
        int, typer.Option("--debounce", min=10, help="Milliseconds with no further change before a sync starts")
    ] = 100,
    local_studio: Annotated[
        bool,
        typer.Option("--local-studio", help="Start a local AutoGen Studio for the watch (data kept in the cache dir)"),
    ] = False,
    redis_url: RedisUrl = None,
    studio_url: StudioUrl = None,
    studio_user_id: StudioUser = None,
    gallery: Gallery = None,
    as_json: AsJson = False,
) -> None:
    """Sync the tree now and again each time its files settle after an edit; one line per sync.
    Ctrl-C stops it (exit 0) with the services it started."""
    import threading

    from producer.watch import SyncLine, Watcher
    from shared.settings import check_store, load_settings, with_overrides

    _check_dir(directory)
    settings = load_settings(redis_url=redis_url, studio_url=studio_url, studio_user_id=studio_user_id)
    check_store(settings)  # before a local Studio is started for nothing
    embedded_default = settings.redis_url is None

    def say(line: SyncLine) -> None:
        if as_json:
            typer.echo(json.dumps(line.as_json()))
            return
        console().print(escape(line.text()), soft_wrap=True, highlight=False)
        for problem in line.problems:
            console().print(f"  {escape(problem)}", soft_wrap=True, highlight=False)

    def warn(text: str) -> None:
        err().print(f"[yellow]{escape(text)}[/yellow]", soft_wrap=True)

    stop = threading.Event()
    try:
        with embedded.LocalServices() as services:
            if local_studio:
                url, proc = embedded.start_studio(
                    settings.cache_dir / "studio", port=settings.local_studio_port, binary=settings.autogenstudio_bin
                )
                services.add_process(proc)
                settings = with_overrides(settings, studio_url=url)
                err().print(f"Started a local AutoGen Studio at {escape(url)}; it stops when the watch ends.")
            with _redis(settings, services, quiet=as_json) as (store, settings):
                if embedded_default:  # its own Redis: nobody else's worker listens there
                    _start_local_worker(settings, services)
                dispatcher = cache(lambda: _dispatcher(settings))
                watcher = Watcher(directory, settings, store, dispatcher, say, gallery, debounce, warn)
                err().print(f"Watching {escape(str(directory))} (Ctrl-C stops).")
                watcher.run(stop)
    except KeyboardInterrupt:
        stop.set()
    err().print("Watch stopped.")
    raise typer.Exit(0)


@app.command()
def pull(
    directory: Annotated[Path, typer.Argument(help="Config tree to write into (created when missing)")],
    team: Annotated[
        list[str] | None,
        typer.Option(
            "--team", help="Pull this team (repeatable; default: the tree's own teams, every row into an empty tree)"
        ),
    ] = None,
    every_row: Annotated[
        bool, typer.Option("--all", help="Pull every team row of the user, not only the tree's own teams")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be written; write nothing")] = False,
    studio_url: StudioUrl = None,
    studio_user_id: StudioUser = None,
    gallery: Gallery = None,
    as_json: AsJson = False,
) -> None:
    """Write teams (and the tree's gallery entry) from Studio into the tree: one component per
    file, shared parts as $ref, secrets as ${VAR}; files that already say the same are untouched."""
    from producer.pull import pull as pull_tree
    from shared.ports import StudioError
    from shared.settings import environment, load_settings

    if directory.exists() and not directory.is_dir():
        raise InvalidInput(f"{directory} is not a directory")
    settings = load_settings(studio_url=studio_url, studio_user_id=studio_user_id)
    try:
        layout, others, failed = pull_tree(directory, settings, environment(), team or [], gallery, dry_run, every_row)
    except StudioError as exc:
        raise ServiceUnavailable(str(exc)) from exc
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


def _apply_prune(prepared: Prepared, settings: Settings, store: RunStore, prune: bool) -> None:
    """With --prune, delete what the plan says and put the outcomes in the run; else say (on
    stderr, also with --json) what a prune would delete."""
    from producer.studio_state import delete_rows

    view = prepared.studio
    if view.error:
        err().print(f"[yellow]warning:[/yellow] {escape(view.error)}", soft_wrap=True)
    if not (view.prune or view.prune_gallery is not None):
        return
    if prune:
        prepared.plan.states.update(delete_rows(settings, store, prepared.namespace, view, prepared.plan.gallery_name))
    else:
        labels = ", ".join(w.label for w in view.prune) or "the gallery entry"
        err().print(f"{escape(labels)}: gone from the tree but still in Studio; `--prune` deletes them")


def _watchdog(
    store: RunStore, run_id: str, settings: Settings, dispatcher: Callable[[], Dispatcher], queues: tuple[str, ...]
) -> Any:
    from producer.recovery import Watchdog

    say = lambda line: err().print(f"[yellow]{escape(line)}[/yellow]", soft_wrap=True)  # noqa: E731
    return Watchdog.for_run(store, run_id, dispatcher, settings, say, queues)


def _start_local_worker(settings: Settings, services: embedded.LocalServices) -> None:
    assert settings.redis_url is not None
    services.add_process(embedded.start_worker(settings.redis_url, log_path=settings.cache_dir / "worker.log"))
    err().print(f"Started a local worker (log: {escape(str(settings.cache_dir / 'worker.log'))}).")


def _dispatcher(settings: Settings) -> Dispatcher:
    from shared.adapters.celery import CeleryDispatcher  # imported only when there is work to enqueue

    return CeleryDispatcher.from_settings(settings)


def _stored_report(redis_url: str | None, build: Any, run_id: str, what: str) -> dict[str, Any]:
    from shared.settings import load_settings

    settings = load_settings(redis_url=redis_url)
    with embedded.LocalServices() as services, _redis(settings, services, quiet=True) as (store, settings):
        report = build(store, run_id)
    if report is None:
        raise InvalidInput(f"no {what} {run_id} (unknown or expired)")
    return report


@app.command()
def status(
    run_id: Annotated[str, typer.Argument(help="Run id printed by sync or run")],
    redis_url: RedisUrl = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every component")] = False,
    as_json: AsJson = False,
) -> None:
    """Show a run's state: counts by outcome, failures with their errors, timings (a sync's or a workflow's)."""
    _show_run(redis_url, run_id, as_json, markdown=False, verbose=verbose)


def _show_run(redis_url: str | None, run_id: str, as_json: bool, markdown: bool, verbose: bool) -> None:
    """`status` and `result`: either kind of run, shown as its kind is; exit code 0 when it succeeded."""
    from producer.report import render_report, render_workflow, stored_report, succeeded, workflow_markdown

    if as_json and markdown:
        raise InvalidInput("--json and --markdown: choose one")
    report = _stored_report(redis_url, stored_report, run_id, "run")
    workflow = report["kind"] == RunKind.WORKFLOW
    if markdown and not workflow:
        raise InvalidInput(f"--markdown: run {run_id} is a sync; only a workflow run has transcripts")
    if as_json:
        typer.echo(json_text.dumps(report, indent=True))
    elif markdown:
        typer.echo(workflow_markdown(report))
    elif workflow:
        render_workflow(console(), report)
    else:
        render_report(console(), report, verbose)
    ok = _workflow_succeeded(report) if workflow else succeeded(report)
    raise typer.Exit(0 if ok else (Exit.PARTIAL if workflow else 1))


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="Workflow file (kind: workflow)")],
    tree: Annotated[
        Path | None,
        typer.Option(
            "--tree",
            help="Config tree its agents come from (default: the folder above workflows/, or the file's folder)",
        ),
    ] = None,
    mode: Annotated[
        str, typer.Option(help="parallel: independent tasks at once; sequential: one task at a time")
    ] = "parallel",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Run every task even when its result is cached")] = False,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Enqueue, print the run id and return")] = False,
    standin_llm: Annotated[
        bool,
        typer.Option(
            "--standin-llm", help="Start the local stand-in model endpoint (deterministic answers) for this run"
        ),
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds to wait for the run at most (default: as long as it moves; it fails when no node ends for STALL_SECONDS)"
        ),
    ] = None,
    redis_url: RedisUrl = None,
    as_json: AsJson = False,
) -> None:
    """Run a workflow across the workers: independent tasks in parallel, dependents after their inputs."""
    from producer.progress import follow_workflow
    from producer.report import render_workflow, workflow_report
    from producer.sync_run import wait
    from producer.workflow_run import load
    from producer.workflow_run import submit as submit_workflow
    from shared.adapters.redis.keys import MODELS_QUEUE, STUDIO_QUEUE
    from shared.settings import load_settings

    if mode not in ("parallel", "sequential"):
        raise typer.BadParameter("expected parallel or sequential", param_hint="--mode")
    _check_seconds("--timeout", timeout, finite=False)
    settings = load_settings(redis_url=redis_url)
    if settings.redis_url is None and no_wait:
        raise InvalidInput("--no-wait needs REDIS_URL: the embedded Redis and worker stop when this command ends")
    prepared = load(file, tree, settings)  # WorkflowInvalid: each error said by main()
    embedded_default = settings.redis_url is None
    with embedded.LocalServices() as services:
        if standin_llm:
            services.add_process(embedded.start_standin_llm(settings.standin_llm_port))
            err().print(
                f"Started the stand-in model endpoint at http://127.0.0.1:{settings.standin_llm_port}/v1 (deterministic answers, not a real model)."
            )
        with _redis(settings, services, quiet=False) as (store, settings):

            def dispatcher() -> Dispatcher:
                if embedded_default:
                    _start_local_worker(settings, services)
                return _dispatcher(settings)

            run_id, _ = submit_workflow(
                prepared, settings, store, dispatcher, sequential=mode == "sequential", no_cache=no_cache
            )
            if no_wait:
                typer.echo(json.dumps({"run_id": run_id}) if as_json else run_id)
                return
            watch = _watchdog(store, run_id, settings, lambda: _dispatcher(settings), (STUDIO_QUEUE, MODELS_QUEUE))
            if as_json:
                wait(store, run_id, timeout=timeout, watch=watch)
            else:
                follow_workflow(store, run_id, [t.id for t in prepared.workflow.tasks], err(), timeout, watch)
            report = workflow_report(store, run_id)
    assert report is not None
    if as_json:
        typer.echo(json_text.dumps(report, indent=True))
    else:
        render_workflow(console(), report)
    raise typer.Exit(0 if _workflow_succeeded(report) else Exit.PARTIAL)


@app.command()
def result(
    run_id: Annotated[str, typer.Argument(help="Run id printed by run (or sync)")],
    as_json: AsJson = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Every task's output as a Markdown document")] = False,
    redis_url: RedisUrl = None,
) -> None:
    """A workflow run's outputs, timings, cache hits and tokens (a sync run's report for a sync)."""
    _show_run(redis_url, run_id, as_json, markdown=markdown, verbose=False)


def _workflow_succeeded(report: dict[str, Any]) -> bool:
    return (
        report.get("state") == RunState.FINISHED
        and report["counts"]["failed"] == 0
        and report["counts"]["skipped"] == 0
    )


bench_app = typer.Typer(help="Measure your setup, compare result sets, report.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("workflow")
def bench_workflow(
    standin: Annotated[
        bool, typer.Option("--standin", help="Against the stand-in endpoint, whose latency --latency sets")
    ] = False,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="A model component's label in --tree, or an OpenAI-compatible URL (key: OPENAI_API_KEY)"
        ),
    ] = None,
    tree: Annotated[Path | None, typer.Option("--tree", help="The tree holding the --model label")] = None,
    model_name: Annotated[
        str, typer.Option("--model-name", help="Model name to ask a --model URL for")
    ] = "gpt-4o-mini",
    team_sizes: Annotated[str, typer.Option("--team-sizes", help="Comma-separated team sizes")] = "1,3,5",
    modes: Annotated[str, typer.Option("--modes", help="parallel, sequential or both")] = "parallel,sequential",
    complexity: Annotated[
        str, typer.Option("--complexity", help="Comma-separated task complexities: simple, medium, complex")
    ] = "medium",
    iterations: Annotated[int, typer.Option("--iterations", min=1)] = 3,
    warmup: Annotated[int, typer.Option("--warmup", min=0)] = 1,
    latency: Annotated[
        str,
        typer.Option(
            "--latency",
            help="The stand-in's latency: fixed:SECONDS, pertoken:SECONDS,SECONDS_PER_TOKEN or lognormal:MEDIAN,SIGMA",
        ),
    ] = "fixed:0.05",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Result folder (default: the cache dir's bench/)")] = None,
    as_json: AsJson = False,
) -> None:
    """Workflow runs on the workers, per team size, execution mode and task complexity: wall time, CPU,
    memory, network bytes, model requests."""
    from producer.bench import endpoint_model, run_workflow_bench
    from shared.core.team_plan import COMPLEXITIES
    from shared.settings import load_settings

    if standin == (model is not None):
        raise InvalidInput("give either --standin or --model LABEL|URL")
    levels = [c.strip() for c in complexity.split(",") if c.strip()]
    if not levels or any(c not in COMPLEXITIES for c in levels):
        raise InvalidInput(f"--complexity {complexity!r}: expected some of {', '.join(COMPLEXITIES)}")
    parts = [x.strip() for x in team_sizes.split(",") if x.strip()]
    if not parts or not all(x.isdigit() and int(x) > 0 for x in parts):
        raise InvalidInput(f"--team-sizes {team_sizes!r}: expected whole numbers above 0, comma-separated")
    sizes = [int(x) for x in parts]
    settings = load_settings()
    folder = out or settings.cache_dir / "bench" / time.strftime("workflow-%Y%m%d-%H%M%S")
    target = endpoint_model(model, tree, model_name) if model else None
    result = run_workflow_bench(
        folder,
        sizes,
        [m.strip() for m in modes.split(",") if m.strip()],
        iterations,
        warmup,
        latency,
        seed,
        settings,
        complexities=levels,
        model=target,
    )
    _show_result(result, folder, as_json)


@bench_app.command("studio")
def bench_studio(
    directory: Annotated[Path, typer.Argument(help="Config tree to scan and register (default: examples/)")] = Path(
        "examples"
    ),
    iterations: Annotated[int, typer.Option("--iterations", min=1)] = 3,
    warmup: Annotated[int, typer.Option("--warmup", min=0)] = 1,
    out: Annotated[Path | None, typer.Option("--out", help="Result folder (default: the cache dir's bench/)")] = None,
    studio_url: StudioUrl = None,
    as_json: AsJson = False,
) -> None:
    """Studio and tree: connectivity, fetching, scanning and registration (cold and cached), per iteration.

    Registration runs under throwaway Studio users (so the cold sync is cold), whose rows are
    deleted at the end. With no STUDIO_URL, a local AutoGen Studio is started for the run."""
    from producer.bench_studio import run_studio_bench
    from shared.settings import load_settings

    _check_dir(directory)
    settings = load_settings(studio_url=studio_url)
    local = studio_url is None and not os.environ.get("STUDIO_URL")
    if local:
        err().print("No STUDIO_URL set: starting a local AutoGen Studio for the benchmark; it stops when it ends.")
    folder = out or settings.cache_dir / "bench" / time.strftime("studio-%Y%m%d-%H%M%S")
    result = run_studio_bench(folder, directory, iterations, warmup, settings, local)
    _show_result(result, folder, as_json)


def _show_result(result: dict[str, Any], folder: Path, as_json: bool) -> None:
    from rich.table import Table

    from producer.bench import table_rows
    from shared.core.bench_stats import figure, recommendations

    if as_json:
        typer.echo(json.dumps({"out": str(folder), **result}))
        return
    table = Table(title=f"{result['kind']} benchmark: {folder}")
    for col in ("measure", "mean", "median", "stdev", "min", "max"):
        if col == "measure":  # a long name folds; a figure cut to "0.…" would say nothing
            table.add_column(col, overflow="fold")
        else:
            table.add_column(col, justify="right", no_wrap=True)
    for name, s in table_rows(result):
        table.add_row(escape(name), *(figure(s[k]) for k in ("mean", "median", "stdev", "min", "max")))
    console().print(table)
    for advice in recommendations(result):
        console().print(f"[yellow]advice[/yellow] {escape(advice)}")


@bench_app.command("compare")
def bench_compare(
    a: Annotated[Path, typer.Argument(help="The baseline result set (folder or result.json)")],
    b: Annotated[Path, typer.Argument(help="The result set to compare with it")],
    fail_on_regression: Annotated[
        float | None, typer.Option("--fail-on-regression", help="Exit 1 when a measure got worse by more than PCT")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Each measure's change in percent, with a 95% bootstrap interval; * marks a change beyond the noise."""
    from producer.bench import compare_results, load, regressions_over

    changes = compare_results(load(a), load(b))
    worse = regressions_over(changes, fail_on_regression) if fail_on_regression is not None else []
    if as_json:
        typer.echo(json_text.dumps([{**c.__dict__, "significant": c.significant} for c in changes], indent=True))
    else:
        for c in changes:
            mark = "*" if c.significant else " "
            typer.echo(f"{mark} {c.measure}: {c.percent:+.1f}% (95% interval {c.low:+.1f}% to {c.high:+.1f}%)")
    if worse:
        err().print(f"[red]regression[/red] over {fail_on_regression:g}%: " + ", ".join(c.measure for c in worse))
        raise typer.Exit(1)


@bench_app.command("report")
def bench_report(
    results: Annotated[list[Path], typer.Argument(help="Result sets (folders or result.json files)")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Where report.html and report.md go (default: the first set)")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """A self-contained HTML report with charts, and a Markdown summary."""
    from producer.bench import load, report

    loaded = [(path.name if path.is_dir() else path.parent.name, load(path)) for path in results]
    html, md = report(loaded, out or (results[0] if results[0].is_dir() else results[0].parent))
    typer.echo(json.dumps({"html": str(html), "markdown": str(md)}) if as_json else f"{html}\n{md}")


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

    _check_dir(tree)
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
        run(target, tree=tree, standin_llm=standin_llm, as_json=as_json)


@app.command()
def monitor(
    refresh: Annotated[float, typer.Option("--refresh", help="Seconds between readings")] = 5.0,
    save_session: Annotated[
        Path | None, typer.Option("--save-session", help="Write what was seen (JSON) on exit")
    ] = None,
    exporter_url: Annotated[
        str | None, typer.Option("--exporter-url", help="Exporter base URL (env EXPORTER_URL)")
    ] = None,
    redis_url: RedisUrl = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one reading (two polls --refresh apart, for rates) as JSON and exit")
    ] = False,
) -> None:
    """Live terminal dashboard: hosts, workers, queues, Studio, throughput and alerts (Ctrl-C to quit)."""
    from rich.live import Live

    from producer.monitor import Monitor
    from shared.settings import load_settings

    _check_seconds("--refresh", refresh)
    settings = load_settings(redis_url=redis_url, exporter_url=exporter_url)
    watcher = Monitor(settings.exporter_url)
    store = _store(settings, settings.redis_url) if settings.redis_url else None
    if as_json:
        watcher.poll()
        time.sleep(refresh)
        snapshot = watcher.poll()
        typer.echo(json_text.dumps({**snapshot.__dict__, "recent_runs": _recent_runs(store)}, indent=True))
        unreachable = any(alert["name"] == "ExporterUnreachable" for alert in snapshot.alerts)
        raise typer.Exit(Exit.UNAVAILABLE if unreachable else Exit.OK)
    try:
        with Live(console=console(), screen=False, auto_refresh=False) as live:
            while True:
                snapshot = watcher.poll()
                live.update(watcher.render(snapshot, _recent_runs(store)), refresh=True)
                time.sleep(refresh)
    except KeyboardInterrupt:
        pass
    finally:
        if save_session:
            try:
                watcher.save(str(save_session))
            except OSError as exc:
                raise InvalidInput(f"--save-session {save_session}: cannot write it: {exc.strerror or exc}") from None
            err().print(f"session saved to {escape(str(save_session))}")


def _recent_runs(store: RunStore | None) -> list[dict[str, Any]]:
    if store is None:
        return []
    try:
        return store.recent_runs()
    except store.errors:
        return []


def _said(exc: AgentqError) -> list[str]:
    """The lines that say a failure: one per error of a workflow that does not validate."""
    errors = getattr(exc, "errors", None)
    return [str(e) for e in errors] if isinstance(errors, list) and errors else [str(exc)]


def _fail(lines: list[str], code: int) -> NoReturn:
    """Say a failure on stderr, and with --json also as JSON on stdout (stdout is never left empty
    for a program that reads it), then exit with the failure's code."""
    for line in lines:
        err().print(f"[red]error:[/red] {escape(line)}", soft_wrap=True)
    args = sys.argv[1:]
    if "--json" in (args[: args.index("--")] if "--" in args else args):
        typer.echo(json.dumps({"error": "\n".join(lines), "errors": lines, "exit_code": code}))
    raise SystemExit(code)


def _usage_error() -> type[Exception]:
    """click's ClickException, the root of typer.BadParameter (typer 0.2x ships click inside itself)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def main() -> None:
    """The `producer` command: failures we can name end in one line and their exit code, never a traceback."""
    usage_error = _usage_error()
    try:
        code = app(standalone_mode=False)  # so that a usage error also reaches --json's reader
    except usage_error as exc:  # a missing argument, an unknown option, a value of the wrong type
        if "--json" in sys.argv[1:]:
            _fail([exc.format_message()], exc.exit_code)  # type: ignore[attr-defined]
        exc.show()  # type: ignore[attr-defined]
        raise SystemExit(exc.exit_code) from None  # type: ignore[attr-defined]
    except typer.Abort:
        err().print("Aborted!")
        raise SystemExit(1) from None
    except ServiceUnavailable as exc:
        _fail(_said(exc), Exit.UNAVAILABLE)
    except InvalidInput as exc:
        _fail(_said(exc), Exit.CONFIG)
    except AgentqError as exc:
        _fail(_said(exc), Exit.PARTIAL)
    except TimeoutError as exc:
        _fail([str(exc)], Exit.TIMEOUT)
    except Exception as exc:
        redis = sys.modules.get("redis")  # not imported: the error cannot be Redis's
        if redis is None or not isinstance(exc, redis.RedisError):
            raise
        url = shown_url(os.environ.get("REDIS_URL") or "the embedded Redis")
        _fail([f"Redis at {url} is unreachable: {exc}"], Exit.UNAVAILABLE)
    raise SystemExit(code or 0)
