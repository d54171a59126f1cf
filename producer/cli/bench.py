"""`producer bench`: measure a setup, compare result sets, report."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shared.core import json_text
from shared.core.exceptions import InvalidInput

if TYPE_CHECKING:
    pass

from producer.cli.app import (
    AsJson,
    StudioUrl,
    app,
    check_dir,
    console,
    err,
    escape,
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
    from producer.bench.run import endpoint_model, run_workflow_bench
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
    from producer.bench.studio import run_studio_bench
    from shared.settings import load_settings

    check_dir(directory)
    settings = load_settings(studio_url=studio_url)
    local = studio_url is None and not os.environ.get("STUDIO_URL")
    if local:
        err().print("No STUDIO_URL set: starting a local AutoGen Studio for the benchmark; it stops when it ends.")
    folder = out or settings.cache_dir / "bench" / time.strftime("studio-%Y%m%d-%H%M%S")
    result = run_studio_bench(folder, directory, iterations, warmup, settings, local)
    _show_result(result, folder, as_json)


def _show_result(result: dict[str, Any], folder: Path, as_json: bool) -> None:
    from rich.table import Table

    from producer.bench.run import table_rows
    from producer.bench.stats import figure, recommendations

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
    from producer.bench.run import compare_results, load, regressions_over

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
    from producer.bench.run import load, report

    loaded = [(path.name if path.is_dir() else path.parent.name, load(path)) for path in results]
    html, md = report(loaded, out or (results[0] if results[0].is_dir() else results[0].parent))
    typer.echo(json.dumps({"html": str(html), "markdown": str(md)}) if as_json else f"{html}\n{md}")
