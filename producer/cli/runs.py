"""`producer run`, `status` and `result`: a workflow run, and either kind of run looked at."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from producer import embedded
from shared.core import json_text
from shared.core.exceptions import InvalidInput
from shared.core.run_model import RunKind, RunState

if TYPE_CHECKING:
    from shared.ports import Dispatcher

from producer.cli.app import (
    AsJson,
    Exit,
    RedisUrl,
    app,
    check_seconds,
    console,
    dispatcher_for,
    err,
    interruptible,
    redis_session,
    start_local_worker,
    stored_report_of,
    watchdog,
)


@app.command()
def status(
    run_id: Annotated[
        str, typer.Argument(metavar="RUN_ID", help="Run id printed by sync or run, or `last` (the default)")
    ] = "last",
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
    report = stored_report_of(redis_url, stored_report, run_id, "run")
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
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Workflow file (kind: workflow)")],
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
    check_seconds("--timeout", timeout, finite=False)
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
        with redis_session(settings, services, quiet=False) as (store, settings):

            def dispatcher() -> Dispatcher:
                if embedded_default:
                    start_local_worker(settings, services)
                return dispatcher_for(settings)

            run_id, _ = submit_workflow(
                prepared, settings, store, dispatcher, sequential=mode == "sequential", no_cache=no_cache
            )
            if no_wait:
                typer.echo(json.dumps({"run_id": run_id}) if as_json else run_id)
                return
            watch = watchdog(store, run_id, settings, lambda: dispatcher_for(settings), (STUDIO_QUEUE, MODELS_QUEUE))
            with interruptible(run_id, embedded_default):
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
    run_id: Annotated[
        str, typer.Argument(metavar="RUN_ID", help="Run id printed by run (or sync), or `last` (the default)")
    ] = "last",
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
