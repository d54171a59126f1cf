"""2,000 independent workflow tasks against the stand-in endpoint answering after 100 ms.

    python benchmarks/bench_workflow.py [--tasks 2000] [--limit 100] [--repeat 3] [--skip-loop]

Tasks run on AutoGen (an AssistantAgent per task). Two celery workers (threads pool, one event
loop each), one redis-server, the stand-in endpoint in its own process. Reports the median and
range over --repeat runs (each with --no-cache) of:
  - flat: 2,000 independent tasks, from enqueue to the last result;
  - the bound set by latency and the model's concurrency limit: tasks x 0.1 s / limit;
  - a 10-deep chain of dependency groups x 200 tasks vs the same 2,000 tasks flat;
and the workers' CPU per task (psutil, over the flat runs); once, the old approach: a plain asyncio
loop with a semaphore of 5 sending the same requests.
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

import httpx
import psutil
import redis
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import redis_and_workers  # noqa: E402
from producer import embedded  # noqa: E402

LATENCY = 0.1


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--limit", type=int, default=100, help="the model's max_concurrency")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each workflow (median reported)")
    ap.add_argument("--skip-loop", action="store_true", help="skip the slow asyncio-loop baseline")
    args = ap.parse_args()
    port = embedded.free_port()
    standin = embedded.start_standin_llm(port)
    base_url = f"http://127.0.0.1:{port}/v1"
    httpx.post(f"http://127.0.0.1:{port}/_control", json={"delay": LATENCY})
    try:
        with tempfile.TemporaryDirectory() as tmp, redis_and_workers(workers=2, concurrency=64) as (url, _):
            root = Path(tmp) / "tree"
            write_tree(root, base_url, args.limit)
            env = {**os.environ, "REDIS_URL": url, "AGENTQ_CACHE_DIR": str(Path(tmp) / "cache")}
            flat_file = write_workflow(root, "flat", 1, args.tasks)
            deep_file = write_workflow(root, "deep", 10, args.tasks // 10)
            children = psutil.Process().children(recursive=True)
            roles = {
                "workers": [p for p in children if "celery" in " ".join(p.cmdline())],
                "redis": [p for p in children if "redis-server" in " ".join(p.cmdline())],
                "stand-in": [psutil.Process(standin.pid)],
            }
            flats, deeps, cpus = [], [], []
            spent: dict[str, list[float]] = {role: [] for role in [*roles, "producer"]}
            redis_client = redis.Redis.from_url(url)
            requests = []  # commands Redis received per task: its round trips, whoever sent them
            for _ in range(args.repeat):
                before = {role: cpu_of(procs) for role, procs in roles.items()}
                commands = int(redis_client.info("stats")["total_commands_processed"])
                seconds, producer_cpu = run(flat_file, env)
                requests.append((int(redis_client.info("stats")["total_commands_processed"]) - commands) / args.tasks)
                flats.append(seconds)
                for role, procs in roles.items():
                    spent[role].append((cpu_of(procs) - before[role]) / args.tasks)
                spent["producer"].append(producer_cpu / args.tasks)
                cpus.append(spent["workers"][-1])
                deeps.append(run(deep_file, env)[0])
            flat, deep = statistics.median(flats), statistics.median(deeps)
            bound = args.tasks * LATENCY / args.limit
            print(
                f"{args.tasks} independent tasks, {LATENCY * 1000:.0f} ms each, model limit {args.limit}, 2 workers (threads),"
                f" median of {args.repeat}"
            )
            print(
                f"  enqueue -> last result: {flat:.2f} s ({min(flats):.2f} to {max(flats):.2f}); bound (tasks x latency / limit):"
                f" {bound:.2f} s -> {flat / bound:.2f}x the bound ({min(flats) / bound:.2f} to {max(flats) / bound:.2f})"
            )
            print(f"  workers' CPU per task (flat runs): {statistics.median(cpus) * 1000:.2f} ms")
            print(f"  Redis commands per task (flat runs, every client): {statistics.median(requests):.1f}")
            print(
                "  CPU per task by process (flat runs, ms): "
                + ", ".join(f"{role} {statistics.median(v) * 1000:.2f}" for role, v in spent.items())
            )
            print(
                f"  10 dependency groups x {args.tasks // 10}: {deep:.2f} s ({min(deeps):.2f} to {max(deeps):.2f})"
                f" -> {deep / flat:.2f}x the flat run"
            )
            if not args.skip_loop:
                loop = asyncio.run(plain_loop(base_url, args.tasks))
                print(f"  plain asyncio loop, semaphore of 5: {loop:.2f} s -> ours is {loop / flat:.1f}x faster")
    finally:
        embedded.stop(standin)


if __name__ == "__main__":
    main()
