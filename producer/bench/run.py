"""`producer bench workflow`: workflow runs on the workers, measured per team size, execution mode
and task complexity (what every benchmark samples is sampling.py's). The result set it writes is
results.py's.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from producer.bench.results import save
from producer.bench.sampling import LimitProbe, Sampler, loopback_bytes, machine, versions
from producer.bench.stats import combined, latency_summary, merge_latency, request_latency
from shared.core.exceptions import InvalidInput, RunInterrupted, StartInterrupted, TaskFailed
from shared.metrics import LATENCY_BUCKETS
from shared.ports import Histograms, Storage
from shared.settings import Settings

if TYPE_CHECKING:
    from producer.embedded import LocalServices

MODEL_LATENCY = "agentq_model_request_duration_seconds"

MODES = ("parallel", "sequential")  # how `producer run` runs a workflow
LATENCIES = "fixed:SECONDS, pertoken:SECONDS,SECONDS_PER_TOKEN or lognormal:MEDIAN,SIGMA"
LATENCY_NUMBERS = {"fixed": 1, "pertoken": 2, "lognormal": 2}


def run_workflow_bench(
    out: Path,
    team_sizes: list[int],
    modes: list[str],
    iterations: int,
    warmup: int,
    latency: str,
    seed: int,
    settings: Settings | None = None,
    complexities: list[str] | None = None,
    model: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The workflow benchmark per team size, execution mode and task complexity; writes and
    returns the result. Against `model` (a model component, with `${VAR}`s resolved on the workers)
    when given, else against the stand-in endpoint, whose latency follows `latency` ("fixed:S",
    "pertoken:S,S_PER_TOKEN" or "lognormal:MEDIAN,SIGMA")."""
    from producer import embedded
    from producer.api import services

    kind, numbers = parse_latency(latency)
    levels = complexities or ["medium"]
    standin = model is None  # said in the result: `model` becomes the stand-in's component below
    sampler = Sampler()
    with embedded.LocalServices() as local:
        if model is None:
            model = _standin(local, kind, numbers)
        with (
            sampler.running(),
            services(settings, worker=True) as (store, ready, _),
            LimitProbe(store).running() as limits,
        ):
            bench = _Bench(store, ready, sampler, limits)
            tree = out / "tree"
            _write_docs(tree, {"bench-model": {**model, "label": "bench-model"}}, None)
            for size, mode, level in itertools.product(team_sizes, modes, levels):
                name, prefix = _case(tree, (size, mode, level), kind, numbers, seed)
                for i in range(warmup + iterations):
                    bench.measure(tree, name, mode == "sequential", prefix if i >= warmup else None)
    parameters = {
        "team_sizes": team_sizes,
        "modes": modes,
        "iterations": iterations,
        "warmup": warmup,
        "latency": latency if standin else None,
        "complexities": levels,
        "endpoint": "stand-in" if standin else "model component",
        "seed": seed,
    }
    result = bench.result(parameters)
    save(out, result)
    return result


def _standin(local: LocalServices, kind: str, numbers: list[float]) -> dict[str, Any]:
    """The stand-in endpoint started among `local`'s processes, its latency set: its model component."""
    from producer import embedded

    port = embedded.free_port()
    local.add_process(embedded.start_standin_llm(port))
    control = {"fixed": {"delay": numbers[0]}, "pertoken": {"delay": numbers[0], "per_token": numbers[-1]}}
    if kind in control:
        import httpx

        httpx.post(f"http://127.0.0.1:{port}/_control", json=control[kind], timeout=10)
    return standin_model(f"http://127.0.0.1:{port}/v1")


def _case(tree: Path, case: tuple[int, str, str], kind: str, numbers: list[float], seed: int) -> tuple[str, str]:
    """The workflow of a (team size, mode, complexity) case written into the tree: its name, and
    the prefix of its measures."""
    from shared.core.team_plan import team_workflow, with_complexity

    size, mode, level = case
    goal = "Compare two task queues for a small team"
    agents, workflow = team_workflow(goal, size, "bench-model", f"bench-{size}-{mode}")
    components, workflow = with_complexity(agents, workflow, level, "bench-model")
    if kind == "lognormal":
        _mark_delays(workflow, numbers, f"{seed}-{size}")
    _write_docs(tree, components, workflow)
    return workflow["name"], f"team{size}.{mode}" + ("" if level == "medium" else f".{level}")


def _mark_delays(workflow: dict[str, Any], numbers: list[float], seeded: str) -> None:
    """A log-normal [delay:S] in each task's description: the stand-in waits as it says."""
    median, sigma = numbers[0], numbers[1] if len(numbers) > 1 else 0.5
    for task in workflow["tasks"]:
        # drawn per (seed, team size, task): both modes see the same latencies
        draw = random.Random(f"{seeded}-{task['id']}")
        task["description"] += f" [delay:{median * draw.lognormvariate(0, sigma):.3f}]"


@dataclass
class _Bench:
    """What the workflow runs are measured with, and what they measured."""

    store: Storage
    settings: Settings
    sampler: Sampler
    limits: LimitProbe
    measures: dict[str, list[float]] = field(default_factory=dict)
    task_seconds: dict[str, list[float]] = field(default_factory=dict)
    requests: dict[str, list[float]] = field(default_factory=dict)
    request_hists: dict[str, dict[str, Any]] = field(default_factory=dict)  # by benchmark and model

    def put(self, name: str, value: float) -> None:
        self.measures.setdefault(name, []).append(value)

    def measure(self, tree: Path, name: str, sequential: bool, prefix: str | None) -> None:
        """One run of the workflow `name`; its measures kept under `prefix` (None: a warmup run)."""
        from producer.api import run_workflow

        before, since, mark = self.store.histograms(), time.monotonic(), self.sampler.now()
        started, cpu, net = time.perf_counter(), self.sampler.cpu_seconds(), loopback_bytes()
        try:
            run = run_workflow(
                tree / "workflows" / f"{name}.yaml",
                tree=tree,
                settings=self.settings,
                sequential=sequential,
                no_cache=True,
            )
        except StartInterrupted as exc:  # ended before a worker could see it
            sys.stderr.write(f"interrupted: benchmark run {exc.run_id} ended before its start reached the broker\n")
            raise
        except RunInterrupted as exc:  # its stand-in stops with the bench: the run would only fail
            with contextlib.suppress(*self.store.errors):
                self.store.cancel_run(exc.run_id)  # nothing new of it starts
                sys.stderr.write(f"interrupted: benchmark run {exc.run_id} cancelled\n")
            raise
        if not run.succeeded:
            raise TaskFailed(f"benchmark workflow {name} failed: {run.failed}")
        if prefix is None:
            return
        self.put(f"{prefix}.wall_seconds", time.perf_counter() - started)
        self.put(f"{prefix}.cpu_seconds", self.sampler.cpu_seconds() - cpu)
        self.put(f"{prefix}.network_bytes", float(loopback_bytes() - net))
        self.put(f"{prefix}.peak_rss_mb", self.sampler.peak_rss_mb(mark))
        self.put(f"{prefix}.model_limit_saturated_share", self.limits.saturated_share(since, time.monotonic()))
        tasks = run.report["tasks"].values()
        self.task_seconds.setdefault(f"{prefix}.wall_seconds", []).extend(t["seconds"] or 0.0 for t in tasks)
        self.requests.setdefault(prefix, []).append(sum(t["model_calls"] or 0 for t in tasks))
        self._model_requests(prefix, before)

    def _model_requests(self, prefix: str, before: Histograms) -> None:
        """The model requests' latencies since `before`: by model, and over every request (retries included)."""
        used = request_latency(
            before, self.store.histograms(), MODEL_LATENCY, LATENCY_BUCKETS, lambda labels: labels[0]
        )
        merge_latency(self.request_hists, {f"{prefix} {name}": h for name, h in used.items()})
        overall = latency_summary(combined(used.values()))
        self.put(f"{prefix}.model_request_mean_seconds", overall["mean"])
        self.put(f"{prefix}.model_request_p95_seconds", overall["p95"])

    def result(self, parameters: dict[str, Any]) -> dict[str, Any]:
        cpu_share = _cpu_share(self.sampler)
        return {
            "kind": "workflow",
            "parameters": parameters,
            "versions": versions(),
            "machine": machine(),
            "measures": self.measures,
            "model_requests": self.requests,
            "task_seconds": self.task_seconds,
            "request_latency": self.request_hists,
            "resources": self.sampler.samples,
            "peak_rss_mb": self.sampler.peak_rss_mb(),
            "facts": {"worker_cpu_share": cpu_share, "model_limit_saturated_share": _saturated(self.measures)},
        }


def _saturated(measures: dict[str, list[float]]) -> float | None:
    """The share of the time a model's limit held tasks back, over every run; None for no run."""
    if not measures:
        return None
    return statistics.fmean(_values_of(measures, ".model_limit_saturated_share"))


def _values_of(measures: dict[str, list[float]], suffix: str) -> list[float]:
    """Every value of the measures whose names end in `suffix`."""
    return [v for k, vs in measures.items() if k.endswith(suffix) for v in vs]


def parse_latency(latency: str) -> tuple[str, list[float]]:
    """("fixed", [seconds]), ("pertoken", [seconds, per token]) or ("lognormal", [median, sigma])
    from the --latency option; InvalidInput naming it otherwise."""
    kind, _, spec = latency.partition(":")
    numbers = _seconds(spec)
    if LATENCY_NUMBERS.get(kind) != len(numbers):  # each kind's numbers, all of them: none is made up
        raise InvalidInput(f"--latency {latency!r}: expected {LATENCIES}, in seconds of 0 or more")
    return kind, numbers


def _seconds(spec: str) -> list[float]:
    """The comma-separated numbers of seconds in `spec`; none when one is blank or no number of 0 or more."""
    try:
        numbers = [float(x) for x in spec.split(",")]
    except ValueError:
        return []
    return numbers if all(0 <= x < float("inf") for x in numbers) else []


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
    if tree is None:
        raise InvalidInput(f"--model {target!r} is a label: give the tree that holds it with --tree")
    return _tree_model(target, tree)


def _tree_model(target: str, tree: Path) -> dict[str, Any]:
    """The model component labelled `target` in the tree, resolved; InvalidInput when there is none."""
    from producer.scanner import scan
    from shared.core.tree import build_tree

    scanned = scan(tree.resolve())
    built = build_tree(scanned.documents, os.environ, scanned.facts)
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
