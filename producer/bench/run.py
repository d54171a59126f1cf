"""`producer bench workflow`: workflow runs on the workers, measured per team size, execution mode
and task complexity; and what every benchmark samples (CPU and memory of the process tree, loopback
bytes, the machine and the versions). The result set it writes is results.py's.
"""

from __future__ import annotations

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

from producer.bench.results import save
from producer.bench.stats import combined, latency_summary, merge_latency, request_latency
from shared.core.exceptions import InvalidInput, TaskFailed
from shared.metrics import LATENCY_BUCKETS

MODEL_LATENCY = "agentq_model_request_duration_seconds"

MODES = ("parallel", "sequential")  # how `producer run` runs a workflow
LATENCIES = "fixed:SECONDS, pertoken:SECONDS,SECONDS_PER_TOKEN or lognormal:MEDIAN,SIGMA"


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

    def now(self) -> float:
        """The clock of the samples' `t`."""
        return time.monotonic() - self._start

    def peak_rss_mb(self, since: float = 0.0) -> float:
        """The highest memory sampled since `since` (`now()`), or the latest sample when none was
        taken since (a window shorter than the sampling interval)."""
        window = [s["rss_mb"] for s in self.samples if s["t"] >= since]
        return max(window, default=self.samples[-1]["rss_mb"] if self.samples else 0.0)


class LimitProbe:
    """Whether any task waited for a model's cluster-wide limit, sampled every `every` seconds in a
    thread: a task waits only while every slot is taken, so the share of samples with waiters is
    the share of the time the limit held work back."""

    def __init__(self, store: Any, every: float = 0.05) -> None:
        self.store = store
        self.every = every
        self.samples: list[tuple[float, bool]] = []  # (monotonic time, some task was waiting)
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                queues = self.store.limit_queues()
            except Exception:  # noqa: BLE001  a missed sample; the benchmark goes on
                continue
            self.samples.append((time.monotonic(), any(waiting for _, waiting in queues.values())))

    def saturated_share(self, since: float, until: float) -> float:
        window = [waiting for t, waiting in self.samples if since <= t <= until]
        return sum(window) / len(window) if window else 0.0

    @contextmanager
    def running(self) -> Iterator[LimitProbe]:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()


def run_workflow_bench(
    out: Path,
    team_sizes: list[int],
    modes: list[str],
    iterations: int,
    warmup: int,
    latency: str,
    seed: int,
    settings: Any = None,
    complexities: list[str] | None = None,
    model: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The workflow benchmark per team size, execution mode and task complexity; writes and
    returns the result. Against `model` (a model component, with `${VAR}`s resolved on the workers)
    when given, else against the stand-in endpoint, whose latency follows `latency` ("fixed:S",
    "pertoken:S,S_PER_TOKEN" or "lognormal:MEDIAN,SIGMA")."""
    from producer import embedded
    from producer.api import run_workflow, services
    from shared.core.team_plan import team_workflow, with_complexity

    kind, numbers = parse_latency(latency)
    levels = complexities or ["medium"]
    measures: dict[str, list[float]] = {}
    task_seconds: dict[str, list[float]] = {}
    requests: dict[str, list[float]] = {}
    request_hists: dict[str, dict[str, Any]] = {}  # model request latency histograms, by benchmark and model
    sampler = Sampler()
    with embedded.LocalServices() as local:
        if model is None:
            port = embedded.free_port()
            local.add_process(embedded.start_standin_llm(port))
            control = {"fixed": {"delay": numbers[0]}, "pertoken": {"delay": numbers[0], "per_token": numbers[-1]}}
            if kind in control:
                import httpx

                httpx.post(f"http://127.0.0.1:{port}/_control", json=control[kind], timeout=10)
            model = standin_model(f"http://127.0.0.1:{port}/v1")
        with sampler.running(), services(settings) as (store, ready), LimitProbe(store).running() as limits:
            tree = out / "tree"
            _write_docs(tree, {"bench-model": {**model, "label": "bench-model"}}, None)
            for size, mode, level in [(s, m, c) for s in team_sizes for m in modes for c in levels]:
                goal = "Compare two task queues for a small team"
                agents, workflow = team_workflow(goal, size, "bench-model", f"bench-{size}-{mode}")
                components, workflow = with_complexity(agents, workflow, level, "bench-model")
                if kind == "lognormal":
                    median, sigma = numbers[0], numbers[1] if len(numbers) > 1 else 0.5
                    for task in workflow["tasks"]:  # the stand-in waits as each task's marker says
                        # drawn per (seed, team size, task): both modes see the same latencies
                        draw = random.Random(f"{seed}-{size}-{task['id']}")
                        task["description"] += f" [delay:{median * draw.lognormvariate(0, sigma):.3f}]"
                _write_docs(tree, components, workflow)
                prefix = f"team{size}.{mode}" + ("" if level == "medium" else f".{level}")
                for i in range(warmup + iterations):
                    before, since, mark = store.histograms(), time.monotonic(), sampler.now()
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
                    measures.setdefault(f"{prefix}.wall_seconds", []).append(time.perf_counter() - started)
                    measures.setdefault(f"{prefix}.cpu_seconds", []).append(sampler.cpu_seconds() - cpu)
                    measures.setdefault(f"{prefix}.network_bytes", []).append(float(loopback_bytes() - net))
                    measures.setdefault(f"{prefix}.peak_rss_mb", []).append(sampler.peak_rss_mb(mark))
                    saturated = limits.saturated_share(since, time.monotonic())
                    measures.setdefault(f"{prefix}.model_limit_saturated_share", []).append(saturated)
                    tasks = run.report["tasks"].values()
                    task_seconds.setdefault(f"{prefix}.wall_seconds", []).extend(t["seconds"] or 0.0 for t in tasks)
                    requests.setdefault(prefix, []).append(sum(t["model_calls"] or 0 for t in tasks))
                    used = request_latency(
                        before, store.histograms(), MODEL_LATENCY, LATENCY_BUCKETS, lambda labels: labels[0]
                    )
                    merge_latency(request_hists, {f"{prefix} {name}": h for name, h in used.items()})
                    overall = latency_summary(combined(used.values()))  # every request, retries included
                    measures.setdefault(f"{prefix}.model_request_mean_seconds", []).append(overall["mean"])
                    measures.setdefault(f"{prefix}.model_request_p95_seconds", []).append(overall["p95"])
    cpu_share = _cpu_share(sampler)
    result: dict[str, Any] = {
        "kind": "workflow",
        "parameters": {
            "team_sizes": team_sizes,
            "modes": modes,
            "iterations": iterations,
            "warmup": warmup,
            "latency": latency if model is None else None,
            "complexities": levels,
            "endpoint": "stand-in" if model is None else "model component",
            "seed": seed,
        },
        "versions": versions(),
        "machine": machine(),
        "measures": measures,
        "model_requests": requests,
        "task_seconds": task_seconds,
        "request_latency": request_hists,
        "resources": sampler.samples,
        "peak_rss_mb": sampler.peak_rss_mb(),
        "facts": {
            "worker_cpu_share": cpu_share,
            "model_limit_saturated_share": statistics.fmean(
                v for k, vs in measures.items() if k.endswith(".model_limit_saturated_share") for v in vs
            )
            if measures
            else None,
        },
    }
    save(out, result)
    return result


def parse_latency(latency: str) -> tuple[str, list[float]]:
    """("fixed", [seconds]), ("pertoken", [seconds, per token]) or ("lognormal", [median, sigma])
    from the --latency option; InvalidInput naming it otherwise."""
    kind, _, spec = latency.partition(":")
    try:
        numbers = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        numbers = []
    if kind not in ("fixed", "pertoken", "lognormal") or not numbers or any(not 0 <= x < float("inf") for x in numbers):
        raise InvalidInput(f"--latency {latency!r}: expected {LATENCIES}, in seconds of 0 or more")
    return kind, numbers


def _cpu_share(sampler: Sampler) -> float | None:
    """Share of the machine's CPU the process tree used over the run (psutil percent is per core)."""
    if not sampler.samples:
        return None
    return statistics.fmean(s["cpu_percent"] for s in sampler.samples) / (100.0 * (os.cpu_count() or 1))


def standin_model(base_url: str) -> dict[str, Any]:
    return {
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


def endpoint_model(target: str, tree: Path | None, model_name: str) -> dict[str, Any]:
    """The model component to benchmark: an OpenAI-compatible URL (its key from `${OPENAI_API_KEY}`,
    resolved on the workers), or the label of a model component in `tree`."""
    if target.startswith(("http://", "https://")):
        model = standin_model(target)
        model["config"] |= {"model": model_name, "api_key": "${OPENAI_API_KEY:-none}"}
        return model
    from producer.scanner import scan
    from shared.core.tree import build_tree

    if tree is None:
        raise InvalidInput(f"--model {target!r} is a label: give the tree that holds it with --tree")
    scanned = scan(tree.resolve())
    built = build_tree(scanned.documents, os.environ.keys(), scanned.facts)
    node = built.nodes.get(target)
    if node is None or node.component_type != "model" or target not in built.valid:
        raise InvalidInput(f"--model {target!r}: no valid model component with that label in {tree}")
    return built.resolved(target)


def _write_docs(tree: Path, components: dict[str, Any], workflow: dict[str, Any] | None) -> None:
    import yaml

    (tree / "components").mkdir(parents=True, exist_ok=True)
    for label, doc in components.items():
        (tree / "components" / f"{label}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    if workflow is not None:
        (tree / "workflows").mkdir(parents=True, exist_ok=True)
        (tree / "workflows" / f"{workflow['name']}.yaml").write_text(yaml.safe_dump(workflow, sort_keys=False))
