"""Run one batch of workflow tasks: each task's agent (or team, round robin) against its model's
OpenAI-compatible endpoint, with a cluster-wide concurrency limit per model, retries and timeouts."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis.asyncio as aioredis

from shared.endpoints import agents_of, endpoint_from_component
from shared.hashing import sha256_hex
from shared.llm import ChatResult, EndpointError, chat
from shared.metrics import Metrics
from shared.prompts import agent_messages, task_key, task_prompt
from shared.refs import MissingVariable, substitute_variables
from shared.semaphore import PrioritySemaphore
from shared.settings import Settings
from shared.store import PREFIX, TERMINAL, Store
from workers.registration import dependency_problem

MAX_TEAM_TURNS = 50


class TaskFailed(Exception):
    pass


@dataclass
class WorkflowContext:
    store: Store
    aredis: aioredis.Redis
    run_id: str
    meta: dict[str, Any]
    http: httpx.AsyncClient
    env: Mapping[str, str]
    settings: Settings
    hostname: str
    metrics: Metrics = field(default_factory=Metrics)
    limits: dict[str, PrioritySemaphore] = field(default_factory=dict)

    def count_retry(self, cause: str) -> None:
        self.store.r.hincrby(self.store.run_key(self.run_id, "retries"), cause, 1)


def termination_limits(spec: Mapping[str, Any] | None) -> tuple[int | None, list[str]]:
    """(max messages, stop texts) from AutoGen termination conditions; Or/And nest (And is read as Or)."""
    if not spec:
        return None, []
    provider = str(spec.get("provider", ""))
    config = spec.get("config") or {}
    if provider.endswith("MaxMessageTermination"):
        return int(config.get("max_messages", 10)), []
    if provider.endswith("TextMentionTermination"):
        return None, [str(config.get("text", "TERMINATE"))]
    limits, texts = [], []
    for sub in config.get("conditions") or []:
        m, t = termination_limits(sub)
        if m is not None:
            limits.append(m)
        texts.extend(t)
    return (min(limits) if limits else None), texts


async def call_agent(ctx: WorkflowContext, agent: Mapping[str, Any], messages: list[dict[str, str]], task: Mapping[str, Any]) -> ChatResult:
    config = agent.get("config") or {}
    model = config.get("model_client")
    if not isinstance(model, dict):
        raise TaskFailed(f"agent {agent.get('label')!r} has no model_client")
    try:
        endpoint = endpoint_from_component(model, ctx.env, ctx.settings.model_max_concurrency)
    except ValueError as exc:
        raise TaskFailed(str(exc)) from exc
    name = f"{PREFIX}:limit:{sha256_hex(endpoint.limit_key)[:16]}"
    limit = ctx.limits.get(name) or ctx.limits.setdefault(name, PrioritySemaphore(ctx.aredis, name, endpoint.max_concurrency))
    retries = task.get("retries")
    async with limit.slot(int(task.get("priority", 0))):
        try:
            return await chat(ctx.http, endpoint, messages, retries=ctx.settings.model_retries if retries is None else retries,
                              backoff=ctx.settings.model_backoff_seconds, on_retry=ctx.count_retry, metrics=ctx.metrics)
        except EndpointError as exc:
            raise TaskFailed(str(exc)) from exc


async def run_agent_or_team(ctx: WorkflowContext, spec: Mapping[str, Any], prompt: str, task: Mapping[str, Any]) -> dict[str, Any]:
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "calls": 0, "attempts": 0}

    def add(result: ChatResult) -> None:
        usage["calls"] += 1
        usage["attempts"] += result.attempts
        for k in ("prompt_tokens", "completion_tokens"):
            value = getattr(result, k)
            usage[k] = None if value is None or usage[k] is None else usage[k] + value

    if spec.get("component_type") != "team":
        result = await call_agent(ctx, spec, agent_messages((spec.get("config") or {}).get("system_message"), prompt, [], ""), task)
        add(result)
        return {"output": result.content, **usage}
    config = spec.get("config") or {}
    participants = agents_of(spec)
    if not participants:
        raise TaskFailed(f"team {spec.get('label')!r} has no participants")
    max_messages, stop_texts = termination_limits(config.get("termination_condition"))
    max_turns = config.get("max_turns") or (None if (max_messages or stop_texts) else len(participants))
    transcript: list[tuple[str, str]] = []
    for turn in range(MAX_TEAM_TURNS):
        agent = participants[turn % len(participants)]
        name = str((agent.get("config") or {}).get("name") or agent.get("label"))
        messages = agent_messages((agent.get("config") or {}).get("system_message"), prompt, transcript, name)
        result = await call_agent(ctx, agent, messages, task)
        add(result)
        transcript.append((name, result.content))
        # the task itself counts as the first message, as in AutoGen
        if max_messages is not None and len(transcript) + 1 >= max_messages:
            break
        if any(text in result.content for text in stop_texts):
            break
        if max_turns is not None and turn + 1 >= max_turns:
            break
    return {"output": transcript[-1][1], "transcript": [{"source": s, "content": c} for s, c in transcript], **usage}


def task_inputs(record: dict[str, Any], states: Mapping[str, dict[str, Any]], outputs: Mapping[str, str]) -> list[tuple[str, str, str]]:
    return [(dep, states[dep]["key"], outputs.get(dep, "")) for dep in record["task"].get("dependencies", [])]


async def run_task(ctx: WorkflowContext, record: dict[str, Any], inputs: list[tuple[str, str, str]]) -> dict[str, Any]:
    """Run one task whose result is not cached: its output, transcript and token counts."""
    task = record["task"]
    try:
        agent = substitute_variables(record["agent"], ctx.env)
    except MissingVariable as exc:
        raise TaskFailed(f"environment variable {exc.name} is not set on worker {ctx.hostname} (field {exc.field})") from exc
    prompt = task_prompt(record["goal"], task, [(dep, out) for dep, _, out in inputs])
    timeout = task.get("timeout") or ctx.settings.task_timeout_seconds
    try:
        result = await asyncio.wait_for(run_agent_or_team(ctx, agent, prompt, task), timeout)
    except asyncio.TimeoutError as exc:
        raise TaskFailed(f"timed out after {timeout:g} s") from exc
    return result


async def run_batch(ctx: WorkflowContext, labels: list[str]) -> dict[str, dict[str, Any]]:
    store = ctx.store
    records = store.specs(ctx.run_id, labels)
    deps = {d for r in records.values() for d in r["task"].get("dependencies", [])}
    states = store.node_states(ctx.run_id, set(labels) | deps)
    outputs_key = store.run_key(ctx.run_id, "outputs")
    outputs = dict(zip(deps, store.r.hmget(outputs_key, list(deps)))) if deps else {}
    todo = [t for t in labels if states.get(t, {}).get("status") not in TERMINAL]
    started = time.time()
    running = {t: {**states.get(t, {}), "status": "running", "started": started, "worker": ctx.hostname, "pid": os.getpid()}
               for t in todo}
    store.set_states(ctx.run_id, running, {t: states.get(t, {}).get("status", "pending") for t in todo})

    # cache lookups for the whole batch in one round trip (a key needs the inputs' outputs)
    blocked = {t: p for t in todo if (p := dependency_problem({"deps": records[t]["task"].get("dependencies", [])}, states))}
    inputs = {t: task_inputs(records[t], states, outputs) for t in todo if t not in blocked}
    keys = {t: task_key(records[t]["goal"], records[t]["task"], records[t]["agent"], inputs[t]) for t in inputs}
    cacheable = [t for t in keys if records[t]["task"].get("cache", True) and not ctx.meta.get("no_cache")]
    hits = dict(zip(cacheable, store.r.mget([Store.task_cache_key(keys[t]) for t in cacheable]))) if cacheable else {}
    fresh: dict[str, dict[str, Any]] = {}
    for t in cacheable:
        ctx.metrics.inc("agentq_cache_requests_total", ["workflow_task", "hit" if hits.get(t) else "miss"])

    async def one(tid: str) -> tuple[str, dict[str, Any]]:
        base = running[tid]
        if tid in blocked:
            return tid, {**base, "status": "skipped", "reason": blocked[tid]}
        if hits.get(tid):
            return tid, {**base, "status": "cached", "key": keys[tid], **json.loads(hits[tid])}
        t0 = time.monotonic()
        try:
            fresh[tid] = await run_task(ctx, records[tid], inputs[tid])
            result = {"status": "done", "outcome": "ran", "key": keys[tid], **fresh[tid]}
        except TaskFailed as exc:
            result = {"status": "failed", "error": str(exc)}
        except Exception as exc:  # a bug must not lose the batch's other results
            result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        return tid, {**base, **result, "seconds": round(time.monotonic() - t0, 4), "finished": time.time()}

    results = dict(await asyncio.gather(*(one(t) for t in todo)))
    if fresh:
        pipe = store.r.pipeline(transaction=False)
        for tid, result in fresh.items():
            pipe.set(Store.task_cache_key(keys[tid]), json.dumps(result), ex=store.cache_ttl)
        pipe.execute()
    finished_outputs = {t: st.pop("output") for t, st in results.items() if "output" in st}
    for st in results.values():
        st.pop("transcript", None)  # kept in the cache entry; run state holds the summary
    if finished_outputs:
        store.r.hset(outputs_key, mapping=finished_outputs)
        store.r.expire(outputs_key, store.run_ttl)
    store.set_states(ctx.run_id, results, {t: "running" for t in results})
    return results
