"""2,000 independent workflow tasks against the stand-in endpoint answering after 100 ms.

    python benchmarks/bench_workflow.py [--tasks 2000] [--limit 100] [--repeat 3] [--skip-loop] [--naive] [--json]

Tasks run on AutoGen (an AssistantAgent per task). Two celery workers (threads pool, one event
loop each), one redis-server, the stand-in endpoint in its own process. Reports the median and
range over --repeat runs (each with --no-cache) of:
  - flat: 2,000 independent tasks, from enqueue to the last result;
  - the bound set by latency and the model's concurrency limit: tasks x 0.1 s / limit;
  - the CPU floor: tasks x the CPU per task of the run's processes (workers, Redis, stand-in) / cores;
    on a machine where it is above the bound, the run is bound by CPU, not by the model's limit;
  - a 10-deep chain of dependency groups x 200 tasks vs the same 2,000 tasks flat;
and the workers' CPU per task (psutil, over the flat runs); once, the old approach: a plain asyncio
loop with a semaphore of 5 sending the same requests.

Beside the bound, in every run, the EXPERT hand-written AutoGen loop (benchmarks/handwritten.py):
the same tasks (same prompts, agent config, stand-in and latency), in one asyncio process with one
shared OpenAIChatCompletionClient loaded once, --limit model requests in flight, an AssistantAgent
per task and `agent.run(task=prompt)`, each task once its inputs are done. Interleaved with ours
(ours flat, expert flat, ours deep, expert deep, per repeat), it reports the medians of
ours / bound, ours / expert (below 1.0: faster than the expert loop), expert / bound, and CPU ms
per task: ours is the workers' (psutil) plus the producer command's, the expert's is its process's
`time.process_time` over its run. `--naive` adds, once, the same loop with
`AssistantAgent.load_component` per task (a model client loaded per task: minutes of CPU).
`--json` prints the figures as one JSON object instead of the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import redis_and_workers  # noqa: E402
from producer import embedded  # noqa: E402

LATENCY = 0.1
HANDWRITTEN = Path(__file__).with_name("handwritten.py")  # the expert loop, run in a process of its own


MODEL_INFO = {
    "vision": False,
    "function_calling": True,
    "json_output": True,
    "family": "unknown",
    "structured_output": True,
}


def write_tree(root: Path, base_url: str, limit: int) -> None:
    (root / "models").mkdir(parents=True)
    (root / "agents").mkdir()
    (root / "models" / "m.yaml").write_text(
        yaml.safe_dump(
            {
                "provider": "autogen_ext.models.openai.OpenAIChatCompletionClient",
                "component_type": "model",
                "label": "m",
                "max_concurrency": limit,
                "config": {"model": "standin", "base_url": base_url, "api_key": "not-needed", "model_info": MODEL_INFO},
            }
        )
    )
    (root / "agents" / "a.yaml").write_text(
        yaml.safe_dump(
            {
                "provider": "autogen_agentchat.agents.AssistantAgent",
                "component_type": "agent",
                "label": "a",
                "config": {
                    "name": "a",
                    "description": "a",
                    "system_message": "Be brief.",
                    "model_client": {"$ref": "m"},
                    "model_client_stream": False,
                    "reflect_on_tool_use": False,
                    "tool_call_summary_format": "{result}",
                },
            }
        )
    )


def write_workflow(root: Path, name: str, groups: int, per_group: int) -> Path:
    tasks = []
    for g in range(groups):
        for i in range(per_group):
            task = {"id": f"g{g}-t{i}", "description": f"{name} task {g}/{i}", "agent": {"$ref": "a"}}
            if g:
                task["dependencies"] = [f"g{g - 1}-t{i}"]
            tasks.append(task)
    path = root / "workflows" / f"{name}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump({"kind": "workflow", "name": name, "goal": "benchmark", "tasks": tasks}))
    return path


def run(path: Path, env: dict[str, str]) -> tuple[float, float]:
    """The run's seconds (enqueue to last result) and the producer command's CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [sys.executable, "-m", "producer.cli", "run", str(path), "--json", "--no-cache"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = json.loads(proc.stdout)
    assert report["counts"]["done"] == len(report["tasks"]), report["counts"]
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return float(report["seconds"]), cpu


def cpu_of(procs: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in procs)


async def plain_loop(base_url: str, n: int, concurrency: int = 5) -> float:
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=60) as client:

        async def one(i: int) -> None:
            async with gate:
                body = {"model": "standin", "messages": [{"role": "user", "content": f"loop task {i}"}]}
                (await client.post(f"{base_url}/chat/completions", json=body)).raise_for_status()

        t0 = time.time()
        await asyncio.gather(*(one(i) for i in range(n)))
        return time.time() - t0


def handwritten(path: Path, tree: Path, limit: int, naive: bool = False) -> dict[str, Any]:
    """The hand-written loop (benchmarks/handwritten.py) in a process of its own: its JSON."""
    command = [sys.executable, str(HANDWRITTEN), str(path), "--tree", str(tree), "--limit", str(limit)]
    proc = subprocess.run([*command, *(["--naive"] if naive else [])], capture_output=True, text=True, timeout=3600)
    if proc.returncode:
        raise RuntimeError(f"handwritten.py failed: {proc.stderr[-2000:]}")
    return dict(json.loads(proc.stdout))


class StandInProbe:
    """The stand-in's requests since the last reset: how many were in flight at most, and the
    prompts (to check both sides sent the same)."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def reset(self) -> None:
        httpx.post(f"{self.url}/_reset").raise_for_status()

    def max_in_flight(self) -> int:
        return int(httpx.get(f"{self.url}/_stats").json()["max_in_flight"])

    def prompts(self) -> list[str]:
        requests = httpx.get(f"{self.url}/_requests", timeout=60).json()
        return sorted(json.dumps(r["messages"]) for r in requests if "warm-up" not in json.dumps(r["messages"]))


def median_range(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure(
    args: argparse.Namespace, url: str, tmp: Path, standin: subprocess.Popen[bytes], port: int
) -> dict[str, Any]:
    root = tmp / "tree"
    base_url = f"http://127.0.0.1:{port}/v1"
    write_tree(root, base_url, args.limit)
    env = {**os.environ, "REDIS_URL": url, "AGENTQ_CACHE_DIR": str(tmp / "cache")}
    files = {
        "flat": write_workflow(root, "flat", 1, args.tasks),
        "deep": write_workflow(root, "deep", 10, args.tasks // 10),
    }
    children = psutil.Process().children(recursive=True)
    roles = {
        "workers": [p for p in children if "celery" in " ".join(p.cmdline())],
        "redis": [p for p in children if "redis-server" in " ".join(p.cmdline())],
        "stand-in": [psutil.Process(standin.pid)],
    }
    probe = StandInProbe(port)
    seconds: dict[str, list[float]] = {"flat": [], "deep": [], "expert_flat": [], "expert_deep": []}
    spent: dict[str, list[float]] = {role: [] for role in [*roles, "producer"]}
    ours_cpu, expert_cpu, in_flight = [], [], {"ours": 0, "expert": 0}
    same_prompts = None
    redis_client = redis.Redis.from_url(url)
    requests = []  # commands Redis received per task: its round trips, whoever sent them
    for i in range(args.repeat):
        for kind, path in files.items():
            before = {role: cpu_of(procs) for role, procs in roles.items()}
            commands = int(redis_client.info("stats")["total_commands_processed"])
            probe.reset()
            ours, producer_cpu = run(path, env)
            seconds[kind].append(ours)
            in_flight["ours"] = max(in_flight["ours"], probe.max_in_flight())
            ours_prompts = probe.prompts() if i == 0 and kind == "flat" else None
            if kind == "flat":
                requests.append((int(redis_client.info("stats")["total_commands_processed"]) - commands) / args.tasks)
                for role, procs in roles.items():
                    spent[role].append((cpu_of(procs) - before[role]) / args.tasks)
                spent["producer"].append(producer_cpu / args.tasks)
                ours_cpu.append(spent["workers"][-1] + spent["producer"][-1])
            probe.reset()
            expert = handwritten(path, root, args.limit)
            seconds[f"expert_{kind}"].append(expert["seconds"])
            in_flight["expert"] = max(in_flight["expert"], probe.max_in_flight())
            if kind == "flat":
                expert_cpu.append(expert["cpu_per_task"])
            if ours_prompts is not None:
                same_prompts = ours_prompts == probe.prompts()
    bound = args.tasks * LATENCY / args.limit
    # what the cores allow: the CPU the run's own processes spend per task (the producer's is
    # mostly spent reading the workflow, before the run's clock starts), spread over every core
    cores = len(os.sched_getaffinity(0))
    in_run_ms = sum(statistics.median(spent[role]) for role in roles) * 1000
    cpu_floor = args.tasks * in_run_ms / 1000 / cores
    flat, expert_flat = statistics.median(seconds["flat"]), statistics.median(seconds["expert_flat"])
    deep, expert_deep = statistics.median(seconds["deep"]), statistics.median(seconds["expert_deep"])
    pairs = [o / e for o, e in zip(seconds["flat"], seconds["expert_flat"], strict=True)]
    result: dict[str, Any] = {
        "tasks": args.tasks,
        "latency": LATENCY,
        "limit": args.limit,
        "repeat": args.repeat,
        "bound": bound,
        "seconds": {k: median_range(v) for k, v in seconds.items()},
        "ours_over_bound": flat / bound,
        "cpu_floor": {"seconds": cpu_floor, "cores": cores, "cpu_ms_per_task": in_run_ms},
        "ours_over_floor": flat / max(bound, cpu_floor),
        "ours_over_expert": flat / expert_flat,
        "ours_over_expert_pairs": median_range(pairs),
        "expert_over_bound": expert_flat / bound,
        "deep_over_flat": deep / flat,
        "expert_deep_over_flat": expert_deep / expert_flat,
        "ours_deep_over_expert_deep": deep / expert_deep,
        "faster_than_expert": flat / expert_flat < 1.0,
        "cpu_ms_per_task": {
            "ours": statistics.median(ours_cpu) * 1000,
            "expert": statistics.median(expert_cpu) * 1000,
            **{f"ours_{role}": statistics.median(v) * 1000 for role, v in spent.items()},
        },
        "redis_commands_per_task": statistics.median(requests),
        "max_in_flight": in_flight,
        "same_prompts": same_prompts,
    }
    if args.naive:
        probe.reset()
        naive = handwritten(files["flat"], root, args.limit, naive=True)
        result["naive"] = {
            **naive,
            "ours_over_naive": flat / naive["seconds"],
            "naive_over_bound": naive["seconds"] / bound,
        }
    if not args.skip_loop:
        loop = asyncio.run(plain_loop(base_url, args.tasks))
        result["plain_loop"] = {"seconds": loop, "over_ours": loop / flat}
    return result


def report(r: dict[str, Any]) -> None:
    s, cpu = r["seconds"], r["cpu_ms_per_task"]

    def span(kind: str) -> str:
        return f"{s[kind]['median']:.2f} s ({s[kind]['min']:.2f} to {s[kind]['max']:.2f})"

    print(
        f"{r['tasks']} independent tasks, {r['latency'] * 1000:.0f} ms each, model limit {r['limit']}, 2 workers (threads),"
        f" median of {r['repeat']}, interleaved with the expert hand-written AutoGen loop (one process, one shared client)"
    )
    print(f"  ours (enqueue -> last result): {span('flat')}; expert loop: {span('expert_flat')}")
    print(f"  bound (tasks x latency / limit): {r['bound']:.2f} s")
    floor = r["cpu_floor"]
    print(
        f"  CPU floor (tasks x {floor['cpu_ms_per_task']:.2f} ms of CPU per task in the run: workers, Redis,"
        f" stand-in; over {floor['cores']} cores): {floor['seconds']:.2f} s"
    )
    print(f"  {'ratio':<16}{'median':>8}")
    print(f"  {'ours / bound':<16}{r['ours_over_bound']:>8.2f}")
    verdict = "faster than the expert loop" if r["faster_than_expert"] else "NOT faster than the expert loop"
    pairs = r["ours_over_expert_pairs"]
    print(
        f"  {'ours / expert':<16}{r['ours_over_expert']:>8.2f}   ({verdict}; run by run {pairs['min']:.2f} to {pairs['max']:.2f})"
    )
    print(f"  {'expert / bound':<16}{r['expert_over_bound']:>8.2f}")
    print(
        f"  {'ours / floor':<16}{r['ours_over_floor']:>8.2f}   (the floor: the larger of the bound and the CPU floor)"
    )
    print(
        f"  CPU per task (flat): ours {cpu['ours']:.2f} ms (workers {cpu['ours_workers']:.2f} + producer"
        f" {cpu['ours_producer']:.2f}; besides: Redis {cpu['ours_redis']:.2f}, stand-in {cpu['ours_stand-in']:.2f}),"
        f" expert {cpu['expert']:.2f} ms (its one process)"
    )
    print(
        f"  model requests in flight at most: ours {r['max_in_flight']['ours']}, expert {r['max_in_flight']['expert']};"
        f" same prompts: {r['same_prompts']}"
    )
    print(f"  Redis commands per task (flat runs, every client): {r['redis_commands_per_task']:.1f}")
    print(
        f"  10 dependency groups x {r['tasks'] // 10}: ours {span('deep')} -> {r['deep_over_flat']:.2f}x the flat run;"
        f" expert {span('expert_deep')} -> {r['expert_deep_over_flat']:.2f}x; ours / expert {r['ours_deep_over_expert_deep']:.2f}"
    )
    if "naive" in r:
        n = r["naive"]
        print(
            f"  naive loop (AssistantAgent.load_component per task): {n['seconds']:.2f} s, CPU {n['cpu_per_task'] * 1000:.2f} ms"
            f" per task -> {n['naive_over_bound']:.2f}x the bound, ours / naive {n['ours_over_naive']:.2f}"
        )
    if "plain_loop" in r:
        loop = r["plain_loop"]
        print(
            f"  plain asyncio loop, semaphore of 5: {loop['seconds']:.2f} s -> ours is {loop['over_ours']:.1f}x faster"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--limit", type=int, default=100, help="the model's max_concurrency (the expert loop's too)")
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs of each workflow, ours and the expert's (median reported)"
    )
    ap.add_argument("--skip-loop", action="store_true", help="skip the slow asyncio-loop baseline")
    ap.add_argument("--naive", action="store_true", help="also, once: AssistantAgent.load_component per task (slow)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args()
    port = embedded.free_port()
    standin = embedded.start_standin_llm(port)
    httpx.post(f"http://127.0.0.1:{port}/_control", json={"delay": LATENCY})
    try:
        with tempfile.TemporaryDirectory() as tmp, redis_and_workers(workers=2, concurrency=64) as (url, _):
            result = measure(args, url, Path(tmp), standin, port)
    finally:
        embedded.stop(standin)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)


if __name__ == "__main__":
    main()
