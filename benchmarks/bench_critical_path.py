"""Each task released when its own inputs are done, measured against list scheduling.

    python benchmarks/bench_critical_path.py [--tasks 200] [--layers 10] [--limit 32] [--seed 7] [--repeat 3]

A layered graph (each task depends on 2 tasks of the layer before) whose model latencies are
log-normal (median 0.3 s, sigma 0.9, seeded); the stand-in endpoint serves each task's latency
(`[delay:S]` in the task's line). Measured: first model request to last answer, from the
endpoint's own records. Bound: list scheduling of the same graph with the same latencies on
`--limit` slots (the model's concurrency limit), ready tasks by rank as the workers rank them.
Also printed: what a barrier per dependency group would give (each layer waits for the last).
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_workflow import write_tree  # noqa: E402
from benchmarks.common import redis_and_workers  # noqa: E402
from producer.standin_llm import ThreadedStandIn  # noqa: E402
from shared.core.workflow import Workflow, release_plan  # noqa: E402


def graph(tasks: int, layers: int, seed: int) -> tuple[dict[str, list[str]], dict[str, float]]:
    rng = random.Random(seed)
    width = tasks // layers
    deps: dict[str, list[str]] = {}
    latency: dict[str, float] = {}
    for layer in range(layers):
        for i in range(width):
            tid = f"l{layer}-t{i}"
            deps[tid] = sorted(rng.sample([f"l{layer - 1}-t{j}" for j in range(width)], 2)) if layer else []
            latency[tid] = round(rng.lognormvariate(0.0, 0.9) * 0.3, 3)
    return deps, latency


def list_schedule(deps: dict[str, list[str]], latency: dict[str, float], slots: int, ranks: dict[str, int]) -> float:
    """Makespan when every ready task takes a free slot at once, highest rank first."""
    open_inputs = {t: len(d) for t, d in deps.items()}
    dependents: dict[str, list[str]] = {t: [] for t in deps}
    for t, ds in deps.items():
        for d in ds:
            dependents[d].append(t)
    ready = [(-ranks[t], t) for t, n in open_inputs.items() if n == 0]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []
    now = 0.0
    while ready or running:
        while ready and len(running) < slots:
            _, t = heapq.heappop(ready)
            heapq.heappush(running, (now + latency[t], t))
        now, done = heapq.heappop(running)
        for d in dependents[done]:
            open_inputs[d] -= 1
            if open_inputs[d] == 0:
                heapq.heappush(ready, (-ranks[d], d))
    return now


def barrier_schedule(deps: dict[str, list[str]], latency: dict[str, float], slots: int, layers: int) -> float:
    total = 0.0
    for layer in range(layers):
        group = sorted((latency[t] for t in deps if t.startswith(f"l{layer}-")), reverse=True)
        lanes = [0.0] * slots
        for x in group:
            lanes[lanes.index(min(lanes))] += x
        total += max(lanes)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--limit", type=int, default=32, help="the model's max_concurrency")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    deps, latency = graph(args.tasks, args.layers, args.seed)
    wf = Workflow.model_validate(
        {"name": "cp", "tasks": [{"id": t, "description": t, "agent": "a", "dependencies": d} for t, d in deps.items()]}
    )
    bound = list_schedule(deps, latency, args.limit, release_plan(wf).ranks)
    barrier = barrier_schedule(deps, latency, args.limit, args.layers)
    standin = ThreadedStandIn()
    try:
        with tempfile.TemporaryDirectory() as tmp, redis_and_workers(workers=2, concurrency=64) as (url, _):
            root = Path(tmp) / "tree"
            write_tree(root, standin.url, args.limit)
            tasks = [
                {"id": t, "description": f"{t} [delay:{latency[t]}]", "agent": {"$ref": "a"}, "dependencies": d}
                for t, d in deps.items()
            ]
            path = root / "workflows" / "cp.yaml"
            path.parent.mkdir()
            path.write_text(yaml.safe_dump({"kind": "workflow", "name": "cp", "goal": "critical path", "tasks": tasks}))
            env = {**os.environ, "REDIS_URL": url, "AGENTQ_CACHE_DIR": str(Path(tmp) / "cache")}
            spans = []
            for _ in range(args.repeat):
                standin.state.requests.clear()
                proc = subprocess.run(
                    [sys.executable, "-m", "producer.cli", "run", str(path), "--json", "--no-cache"],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                report = json.loads(proc.stdout)
                assert report["counts"]["done"] == args.tasks, report["counts"]
                reqs = standin.state.requests
                spans.append(max(q["finished"] for q in reqs) - min(q["started"] for q in reqs))
    finally:
        standin.stop()
    span = statistics.median(spans)
    print(
        f"{args.tasks} tasks in {args.layers} layers, 2 inputs each, log-normal latencies (median 0.3 s, sigma 0.9, "
        f"seed {args.seed}), model limit {args.limit}, 2 workers; median of {args.repeat}"
    )
    print(f"  first request -> last answer: {span:.2f} s ({min(spans):.2f} to {max(spans):.2f})")
    print(
        f"  list-scheduling bound: {bound:.2f} s -> {span / bound:.2f}x ({min(spans) / bound:.2f} to {max(spans) / bound:.2f})"
    )
    print(f"  a barrier per layer would need at least {barrier:.2f} s ({barrier / bound:.2f}x the bound)")


if __name__ == "__main__":
    main()
