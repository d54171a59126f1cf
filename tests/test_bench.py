"""`producer bench`: workflow runs measured per team size, compared with a bootstrap, reported."""

from __future__ import annotations

import base64
import json
import re
import struct
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from producer.bench.run import standin_model
from producer.bench.stats import (
    bucket_quantile,
    combined,
    compare,
    latency_summary,
    recommendations,
    regressions,
    request_latency,
    summary,
)
from tests.conftest import Cli


def test_summary_and_a_clear_slowdown_is_significant_while_noise_is_not() -> None:
    assert summary([1.0, 2.0, 3.0]) == {"mean": 2.0, "median": 2.0, "stdev": 1.0, "min": 1.0, "max": 3.0}
    base = {"wall": [1.00, 1.02, 0.98, 1.01, 0.99]}
    slow = {"wall": [1.50, 1.52, 1.48, 1.51, 1.49]}
    [change] = compare(base, slow)
    assert change.significant and 45 < change.percent < 55 and change.low > 40
    [same] = compare(base, base)
    assert not same.significant and same.percent == 0
    assert [c.measure for c in regressions([change], 20, {"wall"})] == ["wall"]
    assert regressions([change], 60, {"wall"}) == [] and regressions([same], 0, {"wall"}) == []


def test_a_recommendation_appears_when_and_only_when_its_condition_holds() -> None:
    busy = {"facts": {"worker_cpu_share": 0.93}}
    idle = {"facts": {"worker_cpu_share": 0.31}}
    [advice] = recommendations(busy)
    assert "93%" in advice and "add hosts" in advice
    assert recommendations(idle) == []
    assert any("validation" in a for a in recommendations({"facts": {"studio_validate_share": 0.7}}))
    assert recommendations({"facts": {"studio_validate_share": 0.2}}) == []


def test_request_latency_is_what_happened_between_two_readings_per_endpoint() -> None:
    bounds = (0.1, 0.5, 1.0)
    metric = "agentq_studio_request_duration_seconds"
    before = {(metric, ("/teams/", "GET", "200")): [3.0, 0.0, 0.0, 0.0, 0.15]}
    after = {
        (metric, ("/teams/", "GET", "200")): [5.0, 1.0, 0.0, 0.0, 0.55],
        (metric, ("/teams/", "GET", "500")): [0.0, 0.0, 1.0, 0.0, 0.9],
        (metric, ("/validate/", "POST", "200")): [0.0, 0.0, 0.0, 2.0, 4.0],
        ("agentq_run_duration_seconds", ("sync",)): [1.0, 0.0, 0.0, 0.0, 2.0],
    }
    got = request_latency(before, after, metric, bounds, lambda labels: f"{labels[1]} {labels[0]}")
    assert got == {
        "GET /teams/": {"bounds": [0.1, 0.5, 1.0], "counts": [2, 1, 1, 0], "sum": 0.55 - 0.15 + 0.9},
        "POST /validate/": {"bounds": [0.1, 0.5, 1.0], "counts": [0, 0, 0, 2], "sum": 4.0},
    }
    teams = latency_summary(got["GET /teams/"])
    assert teams["count"] == 4 and abs(teams["mean"] - 1.3 / 4) < 1e-9
    # 2 of 4 requests under 0.1 s: the median is the first bucket's top; p95 lies in (0.5, 1.0]
    assert teams["p50"] == 0.1 and 0.5 < teams["p95"] <= 1.0
    assert latency_summary(got["POST /validate/"])["p95"] == 1.0  # beyond the last bound: that bound
    assert sum(combined(got.values())["counts"]) == 6
    assert latency_summary(combined([]))["count"] == 0 and bucket_quantile(0.5, [1.0], [0, 0]) is None


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.titles: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs)["src"] or "")
            self.titles.append(dict(attrs)["alt"] or "")


@pytest.mark.integration
def test_bench_workflow_compare_and_report(wf_cli: Cli, tmp_path: Path) -> None:
    def bench(out: Path, latency: str) -> dict:
        proc = wf_cli.run(
            "bench",
            "workflow",
            "--standin",
            "--team-sizes",
            "1,3",
            "--modes",
            "parallel",
            "--iterations",
            "3",
            "--warmup",
            "0",
            "--latency",
            latency,
            "--out",
            str(out),
            "--json",
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    fast = bench(tmp_path / "fast", "fixed:0.02")
    assert set(fast["measures"]) >= {"team1.parallel.wall_seconds", "team3.parallel.wall_seconds"}
    assert all(len(v) == 3 for v in fast["measures"].values())
    requests = fast["model_requests"]
    assert min(requests["team3.parallel"]) > max(requests["team1.parallel"]) >= 1
    assert fast["machine"]["cores"] and fast["versions"]["autogen-agentchat"] == "0.5.7"
    assert fast["parameters"]["endpoint"] == "stand-in" and fast["parameters"]["latency"] == "fixed:0.02"

    bench(tmp_path / "slow", "fixed:0.3")
    compared = wf_cli.run("bench", "compare", str(tmp_path / "fast"), str(tmp_path / "slow"), "--json")
    changes = {c["measure"]: c for c in json.loads(compared.stdout)}
    print(compared.stdout)
    # each request's latency is what the two sets differ in; wall time follows it, but with three iterations and
    # no warm-up one slow first iteration can widen its interval past significance on a busy machine
    request = changes["team3.parallel.model_request_mean_seconds"]
    assert request["significant"] and request["percent"] > 500
    assert changes["team3.parallel.wall_seconds"]["percent"] > 50
    itself = wf_cli.run("bench", "compare", str(tmp_path / "fast"), str(tmp_path / "fast"), "--json")
    assert not any(c["significant"] for c in json.loads(itself.stdout))
    gate = wf_cli.run("bench", "compare", str(tmp_path / "fast"), str(tmp_path / "slow"), "--fail-on-regression", "20")
    assert gate.returncode == 1 and "regression" in gate.stderr
    gated = wf_cli.run(
        "bench", "compare", str(tmp_path / "fast"), str(tmp_path / "slow"), "--fail-on-regression", "20", "--json"
    )
    worse = {c["measure"] for c in json.loads(gated.stdout) if c["regression"]}
    assert gated.returncode == 1 and "team3.parallel.model_request_mean_seconds" in worse, gated.stdout
    # a result set is not written over
    again = wf_cli.run("bench", "workflow", "--standin", "--out", str(tmp_path / "fast"), "--iterations", "1")
    assert again.returncode == 2 and "holds a result set already" in again.stderr
    assert (
        wf_cli.run(
            "bench", "compare", str(tmp_path / "fast"), str(tmp_path / "fast"), "--fail-on-regression", "20"
        ).returncode
        == 0
    )

    shown = wf_cli.run(
        "bench", "report", str(tmp_path / "fast"), str(tmp_path / "slow"), "--out", str(tmp_path / "report")
    )
    assert shown.returncode == 0, shown.stderr
    parser = _Images()
    parser.feed((tmp_path / "report" / "report.html").read_text())
    # measures, wall time by team size, task and request latency distributions, resources over time
    assert parser.titles == [
        "Measures, one panel per unit",
        "Wall time by team size: parallel against sequential",
        "Task latency distributions",
        "Request latency distributions (Studio or model requests)",
        "Resource use over time",
    ]
    png = base64.b64decode(re.sub(r"^data:image/png;base64,", "", parser.sources[0]))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and 5_000 < len(png) < 2_000_000
    width, height = struct.unpack(">II", png[16:24])
    assert width > 300 and height > 200
    assert "| team3.parallel.wall_seconds |" in (tmp_path / "report" / "report.md").read_text()
    as_json = wf_cli.run("bench", "report", str(tmp_path / "fast"), "--out", str(tmp_path / "report"), "--json")
    assert json.loads(as_json.stdout) == {
        "html": str(tmp_path / "report" / "report.html"),
        "markdown": str(tmp_path / "report" / "report.md"),
    }


STUDIO_MEASURES = {
    "connectivity.health_seconds",
    "connectivity.availability",
    "fetch.list_teams_seconds",
    "fetch.get_team_seconds",
    "fetch.list_galleries_seconds",
    "fetch.get_gallery_seconds",
    "scan.cold_seconds",
    "scan.rescan_seconds",
    "scan.cold_files_per_second",
    "scan.rescan_files_per_second",
    "register.cold_seconds",
    "register.cached_seconds",
    "register.cold_components_per_second",
    "register.cached_components_per_second",
    "register.cold_network_bytes",
    "register.cached_cache_hit_rate",
}


def test_bench_studio_against_a_real_studio_and_its_report(cli: Cli, examples: Path, tmp_path: Path) -> None:
    proc = cli.run(
        "bench",
        "studio",
        str(examples),
        "--iterations",
        "2",
        "--warmup",
        "0",
        "--out",
        str(tmp_path / "s"),
        "--json",
        timeout=600,
        STUDIO_URL=cli.view_url,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["kind"] == "studio" and set(result["measures"]) >= STUDIO_MEASURES
    for name, values in result["measures"].items():
        assert len(values) == (1 if name == "connectivity.availability" else 2), name
    m = result["measures"]
    assert m["connectivity.availability"] == [1.0]
    assert all(rate == 1.0 for rate in m["register.cached_cache_hit_rate"])  # the second sync is all cache
    assert all(rate == 0.0 for rate in m["register.cold_cache_hit_rate"])
    assert min(m["register.cold_seconds"]) > max(m["register.cached_seconds"])
    assert 0.0 <= result["facts"]["studio_validate_share"] <= 1.0
    assert all(calls >= 3 for calls in result["studio_requests"]["register.cold"])  # three team rows at least
    # every request the syncs made is in the latency distributions (and the producer's own drift checks)
    cold = {k: h for k, h in result["request_latency"].items() if k.startswith("register.cold ")}
    assert sum(sum(h["counts"]) for h in cold.values()) >= sum(result["studio_requests"]["register.cold"])
    assert any(k.startswith("register.cold POST /teams/") for k in cold)
    assert all(0 < p95 < 60 for p95 in m["register.cold_request_p95_seconds"])
    # the throwaway users' rows are gone again (Studio adds a default team to a user with none when listed)
    assert result["cleanup"]["team_rows_deleted"] >= 2 * 3
    shown = cli.run("bench", "report", str(tmp_path / "s"), "--out", str(tmp_path / "report"))
    assert shown.returncode == 0, shown.stderr
    parser = _Images()
    parser.feed((tmp_path / "report" / "report.html").read_text())
    assert parser.titles == [
        "Measures, one panel per unit",
        "Cold against cached: registration and scanning",
        "Task latency distributions",
        "Request latency distributions (Studio or model requests)",
        "Resource use over time",
    ]
    for source in parser.sources:
        png = base64.b64decode(re.sub(r"^data:image/png;base64,", "", source))
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and 5_000 < len(png) < 2_000_000
    summary_md = (tmp_path / "report" / "report.md").read_text()
    assert "| register.cold_seconds |" in summary_md and "| register.cold POST /teams/ |" in summary_md


def test_bench_workflow_against_a_model_url_per_task_complexity(
    wf_cli: Cli, standin: tuple[str, Any], tmp_path: Path
) -> None:
    url, state = standin
    proc = wf_cli.run(
        "bench",
        "workflow",
        "--model",
        url,
        "--model-name",
        "bench-endpoint",
        "--team-sizes",
        "3",
        "--modes",
        "parallel",
        "--complexity",
        "simple,complex",
        "--iterations",
        "1",
        "--warmup",
        "0",
        "--out",
        str(tmp_path / "c"),
        "--json",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result["measures"]) >= {"team3.parallel.simple.wall_seconds", "team3.parallel.complex.wall_seconds"}
    requests = result["model_requests"]
    # complex tasks run as two-agent teams over every earlier output: more model requests, longer prompts
    assert requests["team3.parallel.complex"][0] > requests["team3.parallel.simple"][0] >= 3
    assert {r["model"] for r in state.requests} == {"bench-endpoint"}
    sent = [r for r in state.requests if r["status"] == 200]
    assert len(sent) == requests["team3.parallel.complex"][0] + requests["team3.parallel.simple"][0]
    # each request the stand-in answered is in the latency distribution of the run that made it
    latency = result["request_latency"]
    assert sum(sum(h["counts"]) for h in latency.values()) == len(state.requests)
    assert set(latency) == {"team3.parallel.simple bench-endpoint", "team3.parallel.complex bench-endpoint"}
    bad = wf_cli.run("bench", "workflow", "--model", url, "--complexity", "hard")
    assert bad.returncode == 2 and "--complexity" in bad.stderr


def test_bench_workflow_measures_how_long_the_model_limit_held_tasks_back(
    wf_cli: Cli, standin: tuple[str, Any], tmp_path: Path
) -> None:
    url, state = standin
    state.control["delay"] = 1.0  # five requests one at a time: four seconds of waiting in a run of about six

    def bench(limit: int) -> dict:
        tree = tmp_path / f"tree{limit}"
        (tree / "models").mkdir(parents=True)
        model = standin_model(url) | {"label": "limited", "max_concurrency": limit}
        model["config"] = model["config"] | {"model": "limited"}
        (tree / "models" / "limited.json").write_text(json.dumps(model))
        proc = wf_cli.run(
            "bench",
            "workflow",
            "--model",
            "limited",
            "--tree",
            str(tree),
            "--team-sizes",
            "5",
            "--modes",
            "parallel",
            "--complexity",
            "simple",  # five tasks, none waiting for another: only the limit makes them wait
            "--iterations",
            "1",
            "--warmup",
            "0",
            "--out",
            str(tmp_path / f"out{limit}"),
            "--json",
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    one = bench(1)
    [share] = one["measures"]["team5.parallel.simple.model_limit_saturated_share"]
    assert share >= 0.5 and one["facts"]["model_limit_saturated_share"] == share
    assert any("model limit was saturated" in a for a in recommendations(one))
    many = bench(8)
    assert many["facts"]["model_limit_saturated_share"] < 0.2
    assert not any("model limit" in a for a in recommendations(many))
    assert all(mb > 50 for mb in many["measures"]["team5.parallel.simple.peak_rss_mb"])
