"""`producer bench`: measure a setup, compare result sets, report.

Every refusal comes before anything starts or is written: options (modes, latency, team sizes,
complexities), the --out folder (neither a file nor below one), and the result sets a comparison or
a report reads (producer/bench/results.py: load)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shared.core import json_text
from shared.core.exceptions import InvalidInput

from producer.cli.app import (  # isort: skip
    AsJson,
    StudioUrl,
    app,
    check_dir,
    console,
    err,
    escape,
)

if TYPE_CHECKING:
    from rich.table import Table

    from producer.bench.results import ResultSet
    from producer.bench.stats import Change


FIGURES = ("mean", "median", "stdev", "min", "max")  # a measure's columns, after its name

bench_app = typer.Typer(help="Measure your setup, compare result sets, report.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

Iterations = Annotated[
    int, typer.Option("--iterations", min=1, metavar="N", help="Measured iterations (each case runs that often)")
]
Warmup = Annotated[
    int, typer.Option("--warmup", min=0, metavar="N", help="Iterations run first and not measured (caches, imports)")
]
RegressionLimit = Annotated[
    float | None,
    typer.Option(
        "--fail-on-regression",
        metavar="PCT",
        help="Exit 1 when a measure got worse by more than PCT percent (0 or more)",
    ),
]
Out = Annotated[
    Path | None,
    typer.Option("--out", metavar="DIR", help="Folder for result.json (default: a new one in the cache dir's bench/)"),
]


def _out_folder(option: str, path: Path) -> Path:
    """`path` as a folder to write into; refused, naming it, when it or a folder above it is a file."""
    for above in (path, *path.parents):
        if above.exists() and not above.is_dir():
            where = "is a file, not a folder" if above == path else f"is a file: {path} cannot be a folder below it"
            raise InvalidInput(f"{option} {path}: {above} {where}")
    return path


def _given_out(out: Path | None) -> None:
    if out is not None:
        _out_folder("--out", out)
        if (out / "result.json").exists():  # a result set is not written over unasked
            raise InvalidInput(f"--out {out}: it holds a result set already (result.json); name another folder")


def _items(value: str) -> list[str]:
    """The comma-separated items of an option's value (a blank one is refused by its caller)."""
    return [x.strip() for x in value.split(",")]


def _comma_list(option: str, value: str, allowed: tuple[str, ...]) -> list[str]:
    given = _items(value)
    if not given or not set(given) <= set(allowed):
        raise InvalidInput(f"{option} {value!r}: expected some of {', '.join(allowed)}, comma-separated")
    return list(dict.fromkeys(given))


def _team_sizes(value: str) -> list[int]:
    parts = _items(value)
    if not parts or not all(_above_zero(x) for x in parts):
        raise InvalidInput(f"--team-sizes {value!r}: expected whole numbers above 0, comma-separated")
    return list(dict.fromkeys(int(x) for x in parts))


def _above_zero(item: str) -> bool:
    return item.isdigit() and int(item) > 0


@bench_app.command("workflow")
def bench_workflow(
    standin: Annotated[
        bool, typer.Option("--standin", help="Against the stand-in endpoint, whose latency --latency sets")
    ] = False,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            metavar="LABEL|URL",
            help="A model component's label in --tree, or an OpenAI-compatible URL (key: OPENAI_API_KEY)",
        ),
    ] = None,
    tree: Annotated[
        Path | None, typer.Option("--tree", metavar="DIR", help="The tree holding the --model label")
    ] = None,
    model_name: Annotated[
        str, typer.Option("--model-name", metavar="NAME", help="Model name to ask a --model URL for")
    ] = "gpt-4o-mini",
    team_sizes: Annotated[
        str, typer.Option("--team-sizes", metavar="N,N,...", help="Team sizes (agents), comma-separated")
    ] = "1,3,5",
    modes: Annotated[
        str, typer.Option("--modes", metavar="MODE,...", help="parallel, sequential or both, comma-separated")
    ] = "parallel,sequential",
    complexity: Annotated[
        str,
        typer.Option(
            "--complexity", metavar="LEVEL,...", help="Task complexities: simple, medium, complex, comma-separated"
        ),
    ] = "medium",
    iterations: Iterations = 3,
    warmup: Warmup = 1,
    latency: Annotated[
        str,
        typer.Option(
            "--latency",
            metavar="SPEC",
            help="The stand-in's latency: fixed:SECONDS, pertoken:SECONDS,SECONDS_PER_TOKEN or lognormal:MEDIAN,SIGMA",
        ),
    ] = "fixed:0.05",
    seed: Annotated[
        int,
        typer.Option(
            "--seed", metavar="N", help="Seed of the log-normal latencies: the same seed draws the same delays"
        ),
    ] = 0,
    out: Out = None,
    as_json: AsJson = False,
) -> None:
    """Workflow runs on the workers, per team size, execution mode and task complexity: wall time, CPU,
    memory, network bytes, model requests."""
    from producer.bench.run import MODES, endpoint_model, parse_latency, run_workflow_bench
    from shared.core.team_plan import COMPLEXITIES
    from shared.settings import load_settings

    if standin == (model is not None):
        raise InvalidInput("give either --standin or --model LABEL|URL")
    levels = _comma_list("--complexity", complexity, tuple(COMPLEXITIES))
    sizes = _team_sizes(team_sizes)
    chosen = _comma_list("--modes", modes, MODES)
    if standin:
        parse_latency(latency)
    _given_out(out)
    settings = load_settings()
    folder = out or settings.cache_dir / "bench" / time.strftime("workflow-%Y%m%d-%H%M%S")
    target = endpoint_model(model, tree, model_name) if model else None
    result = run_workflow_bench(
        folder, sizes, chosen, iterations, warmup, latency, seed, settings, complexities=levels, model=target
    )
    _show_result(result, folder, as_json)


@bench_app.command("studio")
def bench_studio(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Config tree to scan and register")] = Path(
        "examples"
    ),
    iterations: Iterations = 3,
    warmup: Warmup = 1,
    out: Out = None,
    studio_url: StudioUrl = None,
    as_json: AsJson = False,
) -> None:
    """Studio and tree: connectivity, fetching, scanning and registration (cold and cached), per iteration.

    Registration runs under throwaway Studio users (so the cold sync is cold), whose rows are
    deleted at the end. With no STUDIO_URL, a local AutoGen Studio is started for the run."""
    from producer.bench.studio import run_studio_bench
    from shared.settings import load_settings

    check_dir(directory)
    _given_out(out)
    settings = load_settings(studio_url=studio_url)
    local = studio_url is None and not os.environ.get("STUDIO_URL")
    if local:
        err().print("No STUDIO_URL set: starting a local AutoGen Studio for the benchmark; it stops when it ends.")
    folder = out or settings.cache_dir / "bench" / time.strftime("studio-%Y%m%d-%H%M%S")
    result = run_studio_bench(folder, directory, iterations, warmup, settings, local)
    _show_result(result, folder, as_json)


def _show_result(result: dict[str, Any], folder: Path, as_json: bool) -> None:
    from producer.bench.stats import recommendations

    if as_json:
        typer.echo(json.dumps({"out": str(folder), **result}))
        return
    console().print(_measures_table(result, folder))
    for advice in recommendations(result):
        console().print(f"[yellow]advice[/yellow] {escape(advice)}")


def _measures_table(result: dict[str, Any], folder: Path) -> Table:
    from rich.table import Table

    from producer.bench.results import table_rows
    from producer.bench.stats import figure

    table = Table(title=f"{result['kind']} benchmark: {folder}")
    table.add_column("measure", overflow="fold")  # a long name folds; a figure cut to "0.…" would say nothing
    for col in FIGURES:
        table.add_column(col, justify="right", no_wrap=True)
    for name, s in table_rows(result["measures"]):
        table.add_row(escape(name), *(figure(s[k]) for k in FIGURES))
    return table


@bench_app.command("compare")
def bench_compare(
    a: Annotated[Path, typer.Argument(metavar="OLD", help="The baseline result set (folder or result.json)")],
    b: Annotated[Path, typer.Argument(metavar="NEW", help="The result set to compare with it, of the same kind")],
    fail_on_regression: RegressionLimit = None,
    as_json: AsJson = False,
) -> None:
    """Each measure's change in percent, with a 95% bootstrap interval; * marks a change beyond the noise."""
    from producer.bench.results import compare_results, load, regressions_over

    _check_percent(fail_on_regression)
    changes = compare_results(load(a), load(b))
    worse = regressions_over(changes, fail_on_regression) if fail_on_regression is not None else []
    _show_changes(changes, as_json, {c.measure for c in worse})
    if worse:
        err().print(f"[red]regression[/red] over {fail_on_regression:g}%: " + ", ".join(c.measure for c in worse))
        raise typer.Exit(1)


def _check_percent(limit: float | None) -> None:
    if limit is not None and not limit >= 0:  # NaN too
        raise InvalidInput(
            f"--fail-on-regression {limit:g}: expected a percentage of 0 or more (how much worse a measure may get)"
        )


def _show_changes(changes: list[Change], as_json: bool, worse: set[str]) -> None:
    """Each change; with --json, each also says whether it is a regression past --fail-on-regression."""
    if as_json:
        rows = [{**c.__dict__, "significant": c.significant, "regression": c.measure in worse} for c in changes]
        typer.echo(json_text.dumps(rows, indent=True))
        return
    for c in changes:
        typer.echo(_change_line(c))


def _change_line(c: Change) -> str:
    """The change in percent and its interval; * marks one beyond the noise."""
    mark = "*" if c.significant else " "
    return f"{mark} {c.measure}: {c.percent:+.1f}% (95% interval {c.low:+.1f}% to {c.high:+.1f}%)"


@bench_app.command("report")
def bench_report(
    results: Annotated[
        list[Path], typer.Argument(metavar="DIR", help="Result sets of one kind (folders or result.json files)")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", metavar="DIR", help="Where report.html and report.md go (default: the first set's folder)"
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """A self-contained HTML report with charts, and a Markdown summary."""
    from producer.bench.results import load, same_kind

    sets = [load(path) for path in results]
    same_kind(sets)
    target = _out_folder("--out", out) if out is not None else sets[0].file.parent
    html, md = _written_report(sets, target)
    typer.echo(json.dumps({"html": str(html), "markdown": str(md)}) if as_json else f"{html}\n{md}")


def _written_report(sets: list[ResultSet], target: Path) -> tuple[Path, Path]:
    """report.html and report.md written into `target`; InvalidInput when they cannot be."""
    from producer.bench.report import report

    try:
        return report(sets, target)
    except OSError as exc:
        raise InvalidInput(f"cannot write the report into {target}: {exc.strerror or exc}") from exc
