"""Where a workflow task's CPU goes, in one process: AutoGen loading the agent, one agent turn
through the gated client, AutoGen's client alone (with the stand-in; then without the network on
each request path, alternated: as built, as the workers send it; as built but with its scalars
walked, as the first request of each shape is; the SDK's typed path), and one model-limit slot
(stand-in endpoint and Redis included, as the workers have them).

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
from typing import cast

import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from producer import embedded  # noqa: E402
from producer.standin_llm import ThreadedStandIn  # noqa: E402
from shared.adapters.redis.keys import limit_name  # noqa: E402
from shared.adapters.redis.semaphore import PrioritySemaphore  # noqa: E402
from shared.metrics import Metrics  # noqa: E402
from workers import agent_runtime  # noqa: E402
from workers.model_client import ModelClients, TaskModels  # noqa: E402
from workers.sdk_wire import AsBuiltCompletions, send_as_built  # noqa: E402

MODEL_INFO = {
    "vision": False,
    "function_calling": True,
    "json_output": True,
    "family": "unknown",
    "structured_output": True,
}


class NoShapes(dict):
    """A shape record that never knows a shape: every request takes the walk of its scalars."""

    def get(self, *_: object) -> None:
        return None


def cpu_ms(started: float, n: int) -> float:
    return 1000 * (time.process_time() - started) / n


async def request_paths(n: int) -> dict[str, float]:
    """AutoGen's client create on each request path, with the network left out (an httpx2 mock
    transport answers at once), so that what differs is the client's own CPU; alternated, best of 5."""
    import httpx2
    from autogen_core.models import UserMessage
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    answer = {
        "id": "c1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    transport = httpx2.MockTransport(lambda _request: httpx2.Response(200, json=answer))
    client = OpenAIChatCompletionClient(
        model="m",
        base_url="http://127.0.0.1:9/v1",
        api_key="x",
        model_info=MODEL_INFO,  # type: ignore[arg-type]
        max_retries=0,
        timeout=60.0,  # as the workers configure it (workers/model_client.py): AutoGen sends it with each request
        http_client=httpx2.AsyncClient(transport=transport),  # type: ignore[call-arg]
    )
    send_as_built(client)
    sdk = client._client
    as_built = cast(AsBuiltCompletions, sdk.chat.completions)
    shapes = as_built._shapes
    messages = [UserMessage(content="Task: hi", source="user")]
    await client.create(messages)  # the shape is recorded
    # None: the SDK's own; NoShapes: as built, but every request walked as the first of its shape is
    paths = {"as built": shapes, "as built, scalars walked": NoShapes(), "SDK's typed path": None}
    best: dict[str, float] = {}
    for _ in range(5):
        for name, record in paths.items():
            sdk.chat.__dict__.pop("completions", None)
            if record is not None:
                sdk.chat.completions = as_built  # type: ignore[misc]
                as_built._shapes = record
            t = time.process_time()
            for _ in range(n):
                await client.create(messages)
            best[name] = min(best.get(name, float("inf")), cpu_ms(t, n))
    await client.close()
    return {f"AutoGen client create, {name}, no network": ms for name, ms in best.items()}


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
    semaphore = PrioritySemaphore(client, limit_name("bench"), 100)

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
    t = time.process_time()
    for _ in range(0, n, 100):  # 100 at a time, as the model limit lets them through
        await asyncio.gather(*(inner.create([UserMessage(content="Task: hi", source="user")]) for _ in range(100)))
    out["AutoGen client create, as built (stand-in included)"] = cpu_ms(t, n)
    out.update(await request_paths(n))

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
