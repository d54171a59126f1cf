"""The EXPERT hand-written AutoGen loop that `bench_workflow.py` measures ours against: a
workflow's tasks in ONE asyncio process with ONE `OpenAIChatCompletionClient`, loaded once and
shared, and as many model requests in flight as the model's `max_concurrency`. Each task builds an
`AssistantAgent` around the shared client and calls `agent.run(task=prompt)`; a task starts when
its inputs are done, its prompt holding their outputs (shared/core/prompts.py `task_prompt`, as
the workers build it). `--naive`: each task loads its agent with `AssistantAgent.load_component`
instead (a model client per task, ~50 ms of CPU each).

    python benchmarks/handwritten.py WORKFLOW --tree DIR [--limit N] [--naive]

Prints one JSON object: seconds (first task started to last task done), cpu_per_task (the
process's `time.process_time` over the same span / tasks), tasks. One agent turn before the clock
starts warms the client (lazy imports, the first connection), as the workers are warm.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.core.prompts import task_prompt  # noqa: E402
from shared.settings import Settings  # noqa: E402

SPEC_FIELDS = ("provider", "component_type", "version", "component_version", "description", "label", "config")


def component(path: Path) -> dict[str, Any]:
    spec = yaml.safe_load(path.read_text())
    return {k: spec[k] for k in SPEC_FIELDS if k in spec}


def load_tree(tree: Path) -> tuple[dict[str, Any], dict[str, Any], int | None]:
    """(the model's spec, the agent's spec, the model's max_concurrency) of the benchmark's tree:
    one model (models/m.yaml) and one agent using it (agents/a.yaml)."""
    model_file = tree / "models" / "m.yaml"
    limit = yaml.safe_load(model_file.read_text()).get("max_concurrency")
    return component(model_file), component(tree / "agents" / "a.yaml"), limit


async def run_tasks(workflow: dict[str, Any], limit: int, run_one: Any) -> tuple[float, float]:
    """Every task of `workflow`, each once its dependencies are done, at most `limit` at a time in
    `run_one(prompt) -> output`: (wall seconds, CPU seconds)."""
    goal, tasks = workflow.get("goal", ""), workflow["tasks"]
    loop = asyncio.get_running_loop()
    done: dict[str, asyncio.Future[str]] = {t["id"]: loop.create_future() for t in tasks}
    gate = asyncio.Semaphore(limit)

    async def one(task: dict[str, Any]) -> None:
        inputs = [(dep, await done[dep]) for dep in task.get("dependencies", [])]
        prompt = task_prompt(goal, task, inputs)
        async with gate:
            output = await run_one(prompt)
        done[task["id"]].set_result(output)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(t) for t in tasks))
    return time.perf_counter() - wall, time.process_time() - cpu


async def expert(workflow: dict[str, Any], model: dict[str, Any], agent: dict[str, Any], limit: int) -> dict[str, Any]:
    from autogen_agentchat.agents import AssistantAgent
    from autogen_core.models import ChatCompletionClient

    client = ChatCompletionClient.load_component(model)  # once
    config = {k: v for k, v in agent["config"].items() if k != "model_client"}

    async def run_one(prompt: str) -> str:
        result = await AssistantAgent(model_client=client, **config).run(task=prompt)
        return result.messages[-1].to_text()

    await run_one("warm-up")
    seconds, cpu = await run_tasks(workflow, limit, run_one)
    await client.close()
    return {"seconds": seconds, "cpu_per_task": cpu / len(workflow["tasks"]), "tasks": len(workflow["tasks"])}


async def naive(workflow: dict[str, Any], model: dict[str, Any], agent: dict[str, Any], limit: int) -> dict[str, Any]:
    from autogen_agentchat.agents import AssistantAgent

    spec = {**agent, "config": {**agent["config"], "model_client": model}}

    async def run_one(prompt: str) -> str:
        loaded = AssistantAgent.load_component(spec)  # and with it, a model client
        try:
            result = await loaded.run(task=prompt)
        finally:
            await loaded._model_client.close()
        return result.messages[-1].to_text()

    await run_one("warm-up")
    seconds, cpu = await run_tasks(workflow, limit, run_one)
    return {"seconds": seconds, "cpu_per_task": cpu / len(workflow["tasks"]), "tasks": len(workflow["tasks"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workflow", type=Path, help="a workflow file (kind: workflow)")
    ap.add_argument("--tree", type=Path, required=True, help="the tree with models/m.yaml and agents/a.yaml")
    ap.add_argument("--limit", type=int, help="model requests in flight (default: the model's max_concurrency)")
    ap.add_argument("--naive", action="store_true", help="AssistantAgent.load_component per task")
    args = ap.parse_args()
    workflow = yaml.safe_load(args.workflow.read_text())
    model, agent, declared = load_tree(args.tree)
    limit = args.limit or declared or Settings().model_max_concurrency  # as the workers default it
    measured = asyncio.run((naive if args.naive else expert)(workflow, model, agent, limit))
    print(json.dumps({**measured, "limit": limit, "naive": args.naive}))


if __name__ == "__main__":
    main()
