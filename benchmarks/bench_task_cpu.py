"""Where a workflow task's CPU goes, in one process: AutoGen loading the agent, one agent turn
through the gated client, AutoGen's client alone (the request sent as built, as the workers
send it, and through the SDK's typed path, alternated), and one model-limit slot (stand-in
endpoint and Redis included, as the workers have them).

    python benchmarks/bench_task_cpu.py [--n 300]

Explains the floor under `bench_workflow.py`: tasks x (SDK call + agent turn + stand-in) / cores.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from producer import embedded  # noqa: E402
from producer.standin_llm import ThreadedStandIn  # noqa: E402
from shared.metrics import Metrics  # noqa: E402
from shared.semaphore import PrioritySemaphore  # noqa: E402
from workers import agent_runtime  # noqa: E402
from workers.model_client import ModelClients, TaskModels  # noqa: E402

MODEL_INFO = {
    "vision": False,
    "function_calling": True,
    "json_output": True,
    "family": "unknown",
    "structured_output": True,
}


def cpu_ms(started: float, n: int) -> float:
    return 1000 * (time.process_time() - started) / n


async def measure(url: str, base_url: str, n: int) -> dict[str, float]:
    from autogen_core.models import UserMessage

    model = {
        "provider": "autogen_ext.models.openai.OpenAIChatCompletionClient",
        "component_type": "model",
        "label": "m",
        "config": {"model": "standin", "base_url": base_url, "api_key": "x", "model_info": MODEL_INFO},
    }
    agent = {
        "provider": "autogen_agentchat.agents.AssistantAgent",
        "component_type": "agent",
        "label": "a",
        "config": {
            "name": "a",
            "description": "a",
            "system_message": "Be brief.",
            "model_client": model,
            "model_client_stream": False,
            "reflect_on_tool_use": False,
            "tool_call_summary_format": "{result}",
        },
    }
    # as the workers have it: a small pool that makes callers wait (workers/task_base.py)
    client = aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool.from_url(url, max_connections=16))
    clients = ModelClients(60)
    semaphore = PrioritySemaphore(client, "agentq:limit:bench", 100)

    async def no_count(_cause: str) -> None:
        return None

    def models() -> TaskModels:
        return TaskModels(clients, lambda _k, _n: semaphore, 0, 0, 0.1, 8, Metrics(), no_count)

    await agent_runtime.run(agent_runtime.load(agent, agent, models()), "Task: warm up", 10)
    out = {}
    t = time.process_time()
    for _ in range(n):
        agent_runtime.load(agent, agent, models())
    out["load the agent with AutoGen"] = cpu_ms(t, n)
    loaded = [agent_runtime.load(agent, agent, models()) for _ in range(n)]
    t = time.process_time()
    await asyncio.gather(*(agent_runtime.run(c, "Task: hi", 10) for c in loaded))
    out["one agent turn (gated client, slot, SDK, stand-in)"] = cpu_ms(t, n)
    inner = clients.get(model)
    sdk = inner._client  # type: ignore[attr-defined]
    as_built = sdk.chat.completions
    paths = {"as built": as_built, "SDK's typed path": None}  # None: the SDK's own (workers/sdk_wire.py)

    async def creates() -> float:
        t = time.process_time()
        for _ in range(0, n, 100):  # 100 at a time, as the model limit lets them through
            await asyncio.gather(*(inner.create([UserMessage(content="Task: hi", source="user")]) for _ in range(100)))
        return cpu_ms(t, n)

    await creates()  # connections opened
    best: dict[str, float] = {}
    for _ in range(3):  # alternated: both see the same machine
        for name, completions in paths.items():
            sdk.chat.__dict__.pop("completions", None)
            if completions is not None:
                sdk.chat.completions = completions
            best[name] = min(best.get(name, float("inf")), await creates())
    for name, ms in best.items():
        out[f"AutoGen client create, {name} (stand-in included)"] = ms
    sdk.chat.completions = as_built

    async def slot() -> None:
        async with semaphore.slot(0):
            pass

    t = time.process_time()
    await asyncio.gather(*(slot() for _ in range(n)))
    out["one model-limit slot"] = cpu_ms(t, n)
    await clients.close()
    await client.aclose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    standin = ThreadedStandIn()
    url, proc = embedded.start_redis(Path(tempfile.mkdtemp()) / "redis")
    try:
        for what, ms in asyncio.run(measure(url, standin.url, args.n)).items():
            print(f"  {what}: {ms:.2f} ms CPU")
    finally:
        embedded.stop(proc)
        standin.stop()


if __name__ == "__main__":
    main()
