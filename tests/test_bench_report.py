"""`producer bench compare|report`: result sets read in one place (a typed set, or a refusal naming
the file), compared only with their own kind, and charted one unit per panel with parallel beside
sequential. No services: result sets are written by hand in the saved format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from producer.bench.charts import unit_of
from producer.bench.report import charts, report
from producer.bench.results import ResultSet, compare_results, load, save
from shared.core.exceptions import InvalidInput


def _result(kind: str, measures: dict[str, list[float]], **more: Any) -> dict[str, Any]:
    return {"kind": kind, "parameters": {}, "versions": {}, "machine": {}, "measures": measures, "facts": {}, **more}


def _workflow_measures(slow: float = 1.0) -> dict[str, list[float]]:
    """Team sizes 1 and 3, parallel (flat) against sequential (growing with the team)."""
    out: dict[str, list[float]] = {}
    for size in (1, 3):
        for mode, wall in (("parallel", 0.5), ("sequential", 0.5 * size)):
            prefix = f"team{size}.{mode}"
            out[f"{prefix}.wall_seconds"] = [wall * slow, wall * slow * 1.1, wall * slow * 0.9]
            out[f"{prefix}.network_bytes"] = [200_000.0, 210_000.0, 190_000.0]
            out[f"{prefix}.peak_rss_mb"] = [120.0, 121.0, 119.0]
            out[f"{prefix}.model_limit_saturated_share"] = [0.0, 0.1, 0.0]
    return out


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("missing", None, "no such folder or file"),
        ("empty-folder", "folder", "no result.json in this folder"),
        ("not-json.json", b"this is { not JSON", "not JSON"),
        ("binary.json", bytes(range(256)), "binary"),
        ("array.json", b"[1, 2, 3]", "a JSON array"),
        ("object.json", b'{"hello": "world"}', "no kind"),
        ("other-kind.json", json.dumps(_result("sync", {"a": [1.0]})).encode(), "kind 'sync'"),
        ("no-measures.json", json.dumps({"kind": "workflow"}).encode(), "no measures"),
        ("words.json", json.dumps(_result("workflow", {"a": ["fast"]})).encode(), "measures['a'] is not a list"),
        ("nothing.json", json.dumps(_result("workflow", {})).encode(), "no measure"),
        (
            "histogram.json",
            json.dumps(
                _result("studio", {"a": [1.0]}, request_latency={"GET /x": {"bounds": [1.0], "counts": [1]}})
            ).encode(),
            "request_latency['GET /x']",
        ),
    ],
)
def test_a_result_set_that_is_not_one_is_refused_naming_the_file(
    tmp_path: Path, name: str, content: bytes | str | None, says: str
) -> None:
    path = tmp_path / name
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(InvalidInput) as refused:
        load(path)
    assert name in str(refused.value) and says in str(refused.value), str(refused.value)


def test_a_result_set_loads_from_its_folder_or_its_file_and_kinds_are_not_compared(tmp_path: Path) -> None:
    save(tmp_path / "wf", _result("workflow", {"team1.parallel.wall_seconds": [1.0, 1.1]}))
    save(tmp_path / "st", _result("studio", {"scan.cold_seconds": [0.1, 0.2]}))
    by_folder, by_file = load(tmp_path / "wf"), load(tmp_path / "wf" / "result.json")
    assert by_folder.kind == by_file.kind == "workflow" and by_folder.name == by_file.name == "wf"
    assert by_folder.measures == {"team1.parallel.wall_seconds": [1.0, 1.1]} and by_folder.resources == []
    with pytest.raises(InvalidInput, match="studio result set.*workflow result set.*measure different things"):
        compare_results(load(tmp_path / "st"), by_folder)
    save(tmp_path / "wf5", _result("workflow", {"team5.parallel.wall_seconds": [1.0]}))
    with pytest.raises(InvalidInput, match="no measure in common"):
        compare_results(by_folder, load(tmp_path / "wf5"))


def test_seconds_bytes_memory_and_shares_never_share_an_axis() -> None:
    units = {
        m: unit_of(m)
        for m in (
            "team3.parallel.wall_seconds",
            "team3.parallel.cpu_seconds",
            "team3.parallel.network_bytes",
            "team3.parallel.peak_rss_mb",
            "team3.parallel.model_limit_saturated_share",
            "team3.parallel.model_request_p95_seconds",
            "register.cold_cache_hit_rate",
            "connectivity.availability",
            "scan.cold_files_per_second",
            "register.cold_components_per_second",
        )
    }
    assert units["team3.parallel.wall_seconds"] == units["team3.parallel.cpu_seconds"] == "time"
    assert units["register.cold_cache_hit_rate"] == units["connectivity.availability"] == "share"
    assert units["team3.parallel.model_limit_saturated_share"] == "share"
    assert units["scan.cold_files_per_second"] != units["register.cold_components_per_second"]
    kinds = {"time", "share", "network", "memory", "request latency"}
    assert kinds <= set(units.values())


def _before_and_after(tmp_path: Path) -> list[ResultSet]:
    """Two workflow result sets, saved and read back: "after" takes twice as long."""
    for name, slow in (("before", 1.0), ("after", 2.0)):
        save(tmp_path / name, _result("workflow", _workflow_measures(slow)))
    return [load(tmp_path / "before"), load(tmp_path / "after")]


def test_the_charts_put_one_unit_on_a_panel_and_parallel_beside_sequential(tmp_path: Path) -> None:
    found = charts(_before_and_after(tmp_path), ["before", "after"])  # each figure built once, none drawn
    assert [title for title, _ in found] == [
        "Measures, one panel per unit",
        "Wall time by team size: parallel against sequential",
    ]
    (_, fig), (_, walls) = found
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["time", "share", "network", "memory"]
    rows = {ax.get_title(loc="left"): [t.get_text() for t in ax.get_yticklabels()] for ax in fig.axes}
    assert all(label.endswith("wall_seconds") for label in rows["time"]) and len(rows["time"]) == 4
    assert all(label.endswith("_share") for label in rows["share"])
    wall, speedup = walls.axes[:2]
    assert wall.get_legend_handles_labels()[1] == [
        "parallel, before",
        "sequential, before",
        "parallel, after",
        "sequential, after",
    ]
    # sequential ÷ parallel: 1x for one agent, 3x for three, for each set
    ratios = [list(line.get_ydata()) for line in speedup.get_lines() if not line.get_label().startswith("_")]
    assert ratios == [[pytest.approx(1.0), pytest.approx(3.0)]] * 2


@pytest.mark.integration  # renders both charts as real PNGs (~1 s): not needed to check the charts' structure
def test_the_report_embeds_both_charts_and_tables_every_measure(tmp_path: Path) -> None:
    html, md = report(_before_and_after(tmp_path), tmp_path / "report")
    assert html.read_text().count("<img") == 2 and "| team3.sequential.wall_seconds |" in md.read_text()


@pytest.mark.parametrize(
    ("command", "usage", "listed"),
    [
        ("studio", "bench studio [OPTIONS] [DIR]", ["DIR ", "--iterations N", "--warmup N", "--out DIR"]),
        ("compare", "bench compare [OPTIONS] OLD NEW", ["OLD ", "NEW ", "--fail-on-regression PCT"]),
        ("report", "bench report [OPTIONS] DIR...", ["DIR... ", "--out DIR"]),
        ("workflow", "bench workflow [OPTIONS]", ["--seed N", "--modes MODE,...", "--latency SPEC", "--tree DIR"]),
    ],
)
def test_bench_help_names_each_value_once_by_its_metavar(command: str, usage: str, listed: list[str]) -> None:
    import typer

    from producer.cli.app import app

    group = typer.main.get_command(app)
    bench = group.get_command(group.context_class(group, info_name="producer"), "bench")
    cmd = bench.get_command(bench.context_class(bench, info_name="producer bench"), command)
    with cmd.context_class(cmd, info_name=f"producer bench {command}") as ctx:
        text = cmd.get_help(ctx)
    assert usage in text.replace("\n", " "), text
    lines = [line.strip() for line in text.splitlines()]
    for name in listed:
        assert any(line.startswith(name) for line in lines), (name, text)
    assert not any(line.startswith(("DIR DIR", "OLD OLD", "NEW NEW")) for line in lines), text
