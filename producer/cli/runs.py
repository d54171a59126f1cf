"""`producer run`, `status` and `result`: a workflow run, and either kind of run looked at."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from producer import embedded
from shared.core.exceptions import InvalidInput

if TYPE_CHECKING:
    from producer.pipeline import Show
    from producer.recovery import Watchdog
    from producer.workflow_run import PreparedWorkflow
    from shared.ports import RunStore, Storage
    from shared.settings import Settings

from producer.cli import common
from producer.cli.app import (
    AsJson,
    Exit,
    RedisUrl,
    app,
    check_seconds,
    console,
    err,
    redis_session,
    say_watchdog,
    stored_report_of,
)
from producer.cli.common import NoWait, Timeout

# status's --verbose: a line per component of a sync
EveryComponent = Annotated[bool, typer.Option("--verbose", "-v", help="List every component")]
# the RUN_ID of status and result, said as each command is mostly used
StatusRunId = Annotated[
    str, typer.Argument(metavar="RUN_ID", help="Run id printed by sync or run, or `last` (the default)")
]
ResultRunId = Annotated[
    str, typer.Argument(metavar="RUN_ID", help="Run id printed by run (or sync), or `last` (the default)")
]


@app.command()
def status(
    run_id: StatusRunId = "last",
    redis_url: RedisUrl = None,
    verbose: EveryComponent = False,
    as_json: AsJson = False,
) -> None:
    """Show a run's state: counts by outcome, failures with their errors, timings (a sync's or a workflow's)."""
    _show_run(redis_url, run_id, as_json, markdown=False, verbose=verbose)


def _show_run(redis_url: str | None, run_id: str, as_json: bool, markdown: bool, verbose: bool) -> None:
    """`status` and `result`: either kind of run, shown as its kind is; exit code 0 when it succeeded."""
    from producer.report import stored_report
    from shared.core.run_model import RunKind  # with pydantic: not imported for --help

    if as_json and markdown:
        raise InvalidInput("--json and --markdown: choose one")
    report = stored_report_of(redis_url, stored_report, run_id, "run")
    workflow = report["kind"] == RunKind.WORKFLOW
    if markdown and not workflow:
        raise InvalidInput(f"--markdown: run {run_id} is a sync; only a workflow run has transcripts")
    if markdown:
        typer.echo(_markdown(report))
    elif workflow:
        _show_workflow(report, as_json)
    else:
        _show_sync(report, as_json, verbose)
    raise typer.Exit(_exit_code(report, workflow))


def _markdown(report: dict[str, Any]) -> str:
    """The transcripts as Markdown; what models answered may hold terminal escapes, shown as text."""
    from producer.report import workflow_markdown
    from producer.terminal_text import printable

    return printable(workflow_markdown(report))


def _show_workflow(report: dict[str, Any], as_json: bool) -> None:
    from producer.report import render_workflow

    if as_json:
        common.echo_json(report)
    else:
        render_workflow(console(), report)


def _show_sync(report: dict[str, Any], as_json: bool, verbose: bool) -> None:
    from producer.report import render_report

    if as_json:
        common.echo_json(report)
    else:
        render_report(console(), report, verbose)


def _exit_code(report: dict[str, Any], workflow: bool) -> int:
    """0 when the run succeeded, or runs still with nothing failed so far (a script polling `status`
    tells running from failed); else 1 for a workflow's failed tasks (Exit.PARTIAL) or a sync's."""
    from producer.report import succeeded, workflow_succeeded
    from shared.core.run_model import RunState

    if report.get("state") == RunState.RUNNING:
        counts = report["counts"]
        failing = counts["failed"] or counts.get("drifted") or report.get("error")
        return Exit.PARTIAL if failing else Exit.OK
    if workflow:
        return Exit.OK if workflow_succeeded(report) else Exit.PARTIAL
    return Exit.OK if succeeded(report) else Exit.PARTIAL


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
    no_wait: NoWait = False,
    standin_llm: Annotated[
        bool,
        typer.Option(
            "--standin-llm", help="Start the local stand-in model endpoint (deterministic answers) for this run"
        ),
    ] = False,
    flower: common.Flower = False,
    timeout: Timeout = None,
    redis_url: RedisUrl = None,
    as_json: AsJson = False,
) -> None:
    """Run a workflow across the workers: independent tasks in parallel, dependents after their inputs."""
    from producer import pipeline
    from producer.workflow_run import load
    from shared.settings import load_settings

    if mode not in ("parallel", "sequential"):
        raise typer.BadParameter("expected parallel or sequential", param_hint="--mode")
    check_seconds("--timeout", timeout, finite=False)
    settings = load_settings(redis_url=redis_url, flower=flower or None)
    embedded_default = settings.redis_url is None
    if embedded_default and no_wait:
        raise InvalidInput(common.NO_WAIT_EMBEDDED)
    common.check_flower(flower, embedded_default)
    if standin_llm:
        _point_models_at_the_standin(settings, embedded_default)
    prepared = load(file, tree, settings)  # WorkflowInvalid: each error said by main()
    with embedded.LocalServices() as services:
        if standin_llm:
            _start_standin_llm(settings, services)
        with redis_session(settings, services, quiet=False) as (store, settings):
            with_us = pipeline.Services(
                settings, store, common.local_dispatcher(settings, services, embedded_default), say_watchdog
            )
            run_id, report = pipeline.run_workflow(
                prepared,
                with_us,
                sequential=mode == "sequential",
                no_cache=no_cache,
                timeout=timeout,
                wait_for_it=not no_wait,
                show=_shower(store, prepared, embedded_default, as_json),
            )
            if report is None:
                common.echo_run_id(run_id, as_json)
                return
    _show_workflow(report, as_json)
    raise typer.Exit(_exit_code(report, workflow=True))


def _point_models_at_the_standin(settings: Settings, embedded_default: bool) -> None:
    """The models the stand-in answers read LOCAL_LLM_BASE_URL (the examples' default is its default
    port): on another STANDIN_LLM_PORT, with the variable unset, this command and the worker it
    starts (which inherits the environment) point it at the stand-in, as the tree is read. A
    cluster's workers have environments of their own: said."""
    url, default = (
        f"http://127.0.0.1:{settings.standin_llm_port}/v1",
        type(settings).model_fields["standin_llm_port"].default,
    )
    if os.environ.get("LOCAL_LLM_BASE_URL") or settings.standin_llm_port == default:
        return
    if embedded_default:
        os.environ["LOCAL_LLM_BASE_URL"] = url  # for the worker this command starts, as the user would export it
        return
    err().print(
        f"[yellow]warning:[/yellow] the stand-in listens on {url}: set LOCAL_LLM_BASE_URL to it where the workers run",
        soft_wrap=True,
    )


def _start_standin_llm(settings: Settings, services: embedded.LocalServices) -> None:
    services.add_process(embedded.start_standin_llm(settings.standin_llm_port))
    err().print(
        f"Started the stand-in model endpoint at http://127.0.0.1:{settings.standin_llm_port}/v1 (deterministic answers, not a real model)."
    )


def _shower(store: Storage, prepared: PreparedWorkflow, embedded_default: bool, as_json: bool) -> Show:
    """How the wait is shown: quiet for --json, else each task's progress on stderr. Made before the
    run starts: what it imports would otherwise take CPU from the workers just as they take in the
    run's first tasks."""
    from producer.progress import follow_workflow
    from producer.recovery import Watchdog  # noqa: F401  (loaded now, made by the pipeline)

    tasks = [t.id for t in prepared.workflow.tasks]

    def show(store: RunStore, run_id: str, timeout: float | None, watch: Watchdog) -> None:
        follow = None if as_json else lambda: follow_workflow(store, run_id, tasks, err(), timeout, watch)
        common.wait_for_run(store, run_id, timeout, watch, embedded_default, follow)

    return show


@app.command()
def result(
    run_id: ResultRunId = "last",
    as_json: AsJson = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Every task's output as a Markdown document")] = False,
    redis_url: RedisUrl = None,
) -> None:
    """A workflow run's outputs, timings, cache hits and tokens (a sync run's report for a sync)."""
    _show_run(redis_url, run_id, as_json, markdown=markdown, verbose=False)
