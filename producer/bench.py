"""`producer bench`: measure the user's own setup, compare two result sets, and report.

A result set is a folder holding `result.json`: the parameters, the versions, the machine, one
list of values per measure (one per iteration), the samples behind the distributions, resource
use over time, and the facts the recommendations are computed from (shared/core/bench_stats.py).
"""

from __future__ import annotations

import base64
import io
import json
import os
import platform
import random
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psutil

from shared.core.bench_stats import Change, compare, recommendations, regressions, summary
from shared.core.exceptions import InvalidInput, TaskFailed

RESULT = "result.json"


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def versions() -> dict[str, str]:
    return {pkg: version(pkg) for pkg in ("agentq", "autogen-agentchat", "celery", "redis")}


def loopback_bytes() -> int:
    """Bytes through the loopback interface (every service here talks over it), sent and received."""
    counters = psutil.net_io_counters(pernic=True)
    lo = counters.get("lo") or counters.get("lo0")
    return (lo.bytes_sent + lo.bytes_recv) if lo else 0


class Sampler:
    """CPU and memory of this process and its children (the embedded Redis and worker), sampled
    every `every` seconds in a thread while the block runs."""

    def __init__(self, every: float = 0.2) -> None:
        self.every = every
        self.samples: list[dict[str, float]] = []
        self._known: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._start = time.monotonic()

    def _tree(self) -> list[psutil.Process]:
        # the same Process objects from one sample to the next: cpu_percent measures since the last call
        me = self._known.setdefault(os.getpid(), psutil.Process())
        return [me, *(self._known.setdefault(c.pid, c) for c in me.children(recursive=True))]

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self._tree():
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            rss, cpu = 0, 0.0
            for proc in self._tree():
                try:
                    rss += proc.memory_info().rss
                    cpu += proc.cpu_percent(None)
                except psutil.Error:
                    continue
            self.samples.append(
                {"t": round(time.monotonic() - self._start, 3), "rss_mb": rss / 2**20, "cpu_percent": cpu}
            )

    @contextmanager
    def running(self) -> Iterator[Sampler]:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()

    def peak_rss_mb(self) -> float:
        return max((s["rss_mb"] for s in self.samples), default=0.0)


def run_workflow_bench(
    out: Path,
    team_sizes: list[int],
    modes: list[str],
    iterations: int,
    warmup: int,
    latency: str,
    seed: int,
    settings: Any = None,
) -> dict[str, Any]:
    """The workflow benchmark against the stand-in endpoint, with its latency following `latency`
    ("fixed:S" or "lognormal:MEDIAN,SIGMA"); writes and returns the result."""
    from producer import embedded
    from producer.api import run_workflow, services
    from shared.core.team_plan import team_workflow

    kind, numbers = _latency(latency)
    measures: dict[str, list[float]] = {}
    task_seconds: dict[str, list[float]] = {}
    requests: dict[str, list[float]] = {}
    sampler = Sampler()
    with embedded.LocalServices() as local:
        port = embedded.free_port()
        local.add_process(embedded.start_standin_llm(port))
        if kind == "fixed":
            import httpx

            httpx.post(f"http://127.0.0.1:{port}/_control", json={"delay": numbers[0]}, timeout=10)
        with sampler.running(), services(settings) as (_, ready):
            tree = out / "tree"
            _write_model(tree, f"http://127.0.0.1:{port}/v1")
            for size in team_sizes:
                for mode in modes:
                    goal = "Compare two task queues for a small team"
                    agents, workflow = team_workflow(goal, size, "bench-model", f"bench-{size}-{mode}")
                    if kind == "lognormal":
                        median, sigma = numbers[0], numbers[1] if len(numbers) > 1 else 0.5
                        for task in workflow["tasks"]:  # the stand-in waits as each task's marker says
                            # drawn per (seed, team size, task): both modes see the same latencies
                            draw = random.Random(f"{seed}-{size}-{task['id']}")
                            delay = median * draw.lognormvariate(0, sigma)
                            task["description"] += f" [delay:{delay:.3f}]"
                    _write_docs(tree, agents, workflow)
                    name = f"team{size}.{mode}.wall_seconds"
                    for i in range(warmup + iterations):
                        started, cpu, net = time.perf_counter(), sampler.cpu_seconds(), loopback_bytes()
                        run = run_workflow(
                            tree / "workflows" / f"{workflow['name']}.yaml",
                            tree=tree,
                            settings=ready,
                            sequential=mode == "sequential",
                            no_cache=True,
                        )
                        if not run.succeeded:
                            raise TaskFailed(f"benchmark workflow {workflow['name']} failed: {run.failed}")
                        if i < warmup:
                            continue
                        measures.setdefault(name, []).append(time.perf_counter() - started)
                        measures.setdefault(f"team{size}.{mode}.cpu_seconds", []).append(sampler.cpu_seconds() - cpu)
                        measures.setdefault(f"team{size}.{mode}.network_bytes", []).append(
                            float(loopback_bytes() - net)
                        )
                        tasks = run.report["tasks"].values()
                        task_seconds.setdefault(name, []).extend(t["seconds"] or 0.0 for t in tasks)
                        requests.setdefault(f"team{size}.{mode}", []).append(sum(t["model_calls"] or 0 for t in tasks))
    cpu_share = _cpu_share(sampler)
    result: dict[str, Any] = {
        "kind": "workflow",
        "parameters": {
            "team_sizes": team_sizes,
            "modes": modes,
            "iterations": iterations,
            "warmup": warmup,
            "latency": latency,
            "seed": seed,
        },
        "versions": versions(),
        "machine": machine(),
        "measures": measures,
        "model_requests": requests,
        "task_seconds": task_seconds,
        "resources": sampler.samples,
        "peak_rss_mb": sampler.peak_rss_mb(),
        "facts": {"worker_cpu_share": cpu_share},
    }
    save(out, result)
    return result


def _latency(latency: str) -> tuple[str, list[float]]:
    """("fixed", [seconds]) or ("lognormal", [median, sigma]) from the --latency option."""
    kind, _, spec = latency.partition(":")
    try:
        numbers = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        numbers = []
    if kind not in ("fixed", "lognormal") or not numbers:
        raise InvalidInput(f"--latency {latency!r}: expected fixed:SECONDS or lognormal:MEDIAN,SIGMA")
    return kind, numbers


def _cpu_share(sampler: Sampler) -> float | None:
    """Share of the machine's CPU the process tree used over the run (psutil percent is per core)."""
    if not sampler.samples:
        return None
    return statistics.fmean(s["cpu_percent"] for s in sampler.samples) / (100.0 * (os.cpu_count() or 1))


def _write_model(tree: Path, base_url: str) -> None:
    import yaml

    (tree / "models").mkdir(parents=True, exist_ok=True)
    model = {
        "provider": "autogen_ext.models.openai.OpenAIChatCompletionClient",
        "component_type": "model",
        "label": "bench-model",
        "max_concurrency": 32,
        "config": {
            "model": "standin",
            "base_url": base_url,
            "api_key": "not-a-key",
            "model_info": {
                "vision": False,
                "function_calling": True,
                "json_output": True,
                "family": "unknown",
                "structured_output": True,
            },
        },
    }
    (tree / "models" / "bench-model.yaml").write_text(yaml.safe_dump(model, sort_keys=False))


def _write_docs(tree: Path, agents: dict[str, Any], workflow: dict[str, Any]) -> None:
    import yaml

    (tree / "agents").mkdir(parents=True, exist_ok=True)
    (tree / "workflows").mkdir(parents=True, exist_ok=True)
    for label, doc in agents.items():
        (tree / "agents" / f"{label}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    (tree / "workflows" / f"{workflow['name']}.yaml").write_text(yaml.safe_dump(workflow, sort_keys=False))


def save(out: Path, result: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULT).write_text(json.dumps(result, indent=2))


def load(path: Path) -> dict[str, Any]:
    """A result set: its folder or its result.json."""
    file = path / RESULT if path.is_dir() else path
    data: dict[str, Any] = json.loads(file.read_text())
    return data


def table_rows(result: dict[str, Any]) -> list[tuple[str, dict[str, float]]]:
    return [(name, summary(values)) for name, values in sorted(result["measures"].items()) if values]


def compare_results(a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    return compare(a["measures"], b["measures"])


HIGHER_IS_BETTER = ("_per_second", "availability", "hit_rate")


def regressions_over(changes: list[Change], percent: float) -> list[Change]:
    # times, CPU seconds, bytes and request counts: larger is worse; rates and availability: smaller is
    return regressions(changes, percent, {c.measure for c in changes if not c.measure.endswith(HIGHER_IS_BETTER)})


def report(results: list[tuple[str, dict[str, Any]]], out: Path) -> tuple[Path, Path]:
    """A self-contained HTML report (charts as embedded PNGs) and a Markdown summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts: list[tuple[str, str]] = []

    def png(fig: Any) -> str:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        return base64.b64encode(buf.getvalue()).decode()

    measures = sorted({m for _, r in results for m in r["measures"]})
    fig, ax = plt.subplots(figsize=(max(6, len(measures) * 1.2), 4))
    width = 0.8 / max(1, len(results))
    for i, (name, r) in enumerate(results):
        stats = [summary(r["measures"][m]) if r["measures"].get(m) else None for m in measures]
        ax.bar(
            [x + i * width for x in range(len(measures))],
            [s["mean"] if s else 0 for s in stats],
            width,
            yerr=[s["stdev"] if s else 0 for s in stats],
            capsize=3,
            label=name,
        )
    ax.set_xticks([x + width * (len(results) - 1) / 2 for x in range(len(measures))], measures, rotation=30, ha="right")
    ax.set_ylabel("mean (error bars: standard deviation)")
    ax.legend()
    charts.append(("Measures, mean and standard deviation", png(fig)))

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in results:
        samples = [s for values in r.get("task_seconds", {}).values() for s in values]
        if samples:
            ax.hist(samples, bins=30, alpha=0.5, label=name)
    ax.set_xlabel("task seconds")
    ax.set_ylabel("tasks")
    ax.legend()
    charts.append(("Latency distribution", png(fig)))

    fig, (cpu, mem) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    for name, r in results:
        samples = r.get("resources", [])
        cpu.plot([s["t"] for s in samples], [s["cpu_percent"] for s in samples], label=name)
        mem.plot([s["t"] for s in samples], [s["rss_mb"] for s in samples], label=name)
    cpu.set_ylabel("CPU %")
    mem.set_ylabel("RSS MB")
    mem.set_xlabel("seconds")
    cpu.legend()
    charts.append(("Resource use over time", png(fig)))

    md = ["# Benchmark report", ""]
    for name, r in results:
        md += [
            f"## {name}",
            "",
            f"machine: {r['machine']}",
            "",
            "| measure | mean | median | stdev | min | max |",
            "|---|---|---|---|---|---|",
        ]
        md += [
            f"| {m} | {s['mean']:.3f} | {s['median']:.3f} | {s['stdev']:.3f} | {s['min']:.3f} | {s['max']:.3f} |"
            for m, s in table_rows(r)
        ]
        advice = recommendations(r)
        md += ["", "Recommendations:" if advice else "No recommendation: nothing measured calls for a change.", ""]
        md += [f"- {a}" for a in advice]
        md.append("")
    html = ["<!doctype html><html><head><meta charset='utf-8'><title>Benchmark report</title></head><body>"]
    html.append("<pre>" + _escape("\n".join(md)) + "</pre>")
    for title, data in charts:
        html.append(f"<h2>{_escape(title)}</h2><img alt='{_escape(title)}' src='data:image/png;base64,{data}'>")
    html.append("</body></html>")
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.html").write_text("\n".join(html))
    (out / "report.md").write_text("\n".join(md))
    return out / "report.html", out / "report.md"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#39;")
