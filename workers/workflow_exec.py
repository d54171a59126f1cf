"""Run workflow tasks on AutoGen. Each task ends on its own: its output, cache entry and state are
written, and the tasks that were waiting only for it are published at once, whatever else the
same message carried."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from shared.adapters.redis.store import AsyncRunState
from shared.core.exceptions import RunCancelled
from shared.core.prompts import task_key, task_prompt
from shared.core.refs import redact, secret_values, substitute_variables
from shared.core.run_model import TERMINAL, NodeState, RunMeta, Status
from shared.metrics import Metrics
from shared.ports import ModelLimit
from shared.settings import Settings
from workers import agent_runtime, batch
from workers.model_client import ModelClients, StartOrder, TaskModels


@dataclass
class WorkflowContext:
    state: AsyncRunState
    run_id: str
    meta: RunMeta
    env: Mapping[str, str]
    settings: Settings
    hostname: str  # the worker's node name
    task_id: str | None  # the Celery message carrying these tasks (producer/recovery.py requeues it)
    models: ModelClients
    limit: Callable[[str, int], ModelLimit]
    publish: Callable[[list[tuple[str, int, int]]], Awaitable[None]]  # (task id, rank, message priority) released
    finish: Callable[[], None]  # the run's last task has ended
    admission: asyncio.Semaphore | None = None  # the process's (workers/model_client.py StartOrder)
    metrics: Metrics = field(default_factory=Metrics)
    cancelled: Callable[[], Awaitable[bool]] | None = None  # `producer cancel` ended the run


async def run_tasks(ctx: WorkflowContext, task_ids: list[str]) -> None:
    records, states, outputs = await ctx.state.load(ctx.run_id, task_ids)
    todo = [t for t in task_ids if t in records]
    for tid in [t for t in todo if states.get(t, {}).get("status") in TERMINAL]:
        # redelivered after it ended: publish only what it released and nobody published
        ended = await ctx.state.end_task(
            ctx.run_id,
            tid,
            states[tid],
            states[tid]["status"],
            None,
            None,
            records[tid]["dependents"],
            ctx.metrics,
            counted=False,  # it did not run again
        )
        await _release(ctx, records[tid], ended.released)
        if ended.left == 0:
            ctx.finish()
    claimed = batch.claim(todo, states, ctx.hostname, ctx.task_id)
    fresh, running = claimed.todo, claimed.running
    if not fresh:
        return
    await ctx.state.set_states(ctx.run_id, running, claimed.previous)
    ranked = sorted(fresh, key=lambda t: -records[t].get("rank", 0))
    order = StartOrder(ranked, ctx.admission)
    await asyncio.gather(*(_one(ctx, t, records[t], running[t], states, outputs, order) for t in ranked))


async def _one(
    ctx: WorkflowContext,
    tid: str,
    record: dict[str, Any],
    base: NodeState,
    states: Mapping[str, NodeState],
    outputs: Mapping[str, str],
    order: StartOrder,
) -> None:
    try:
        await _end_one(ctx, tid, record, base, states, outputs, order)
    finally:
        order.queued(tid)  # ended, or never reached a model: the tasks behind it go on


async def _end_one(
    ctx: WorkflowContext,
    tid: str,
    record: dict[str, Any],
    base: NodeState,
    states: Mapping[str, NodeState],
    outputs: Mapping[str, str],
    order: StartOrder,
) -> None:
    task = record["task"]
    outputs_of: dict[str, Any] = {}  # the task's output and transcript, when it has them

    async def work() -> NodeState:
        inputs = [(dep, states[dep]["key"], outputs.get(dep, "")) for dep in task.get("dependencies", [])]
        key = task_key(record["goal"], task, record["agent"], inputs)
        hit = None
        if task.get("cache", True) and not ctx.meta.get("no_cache") and not record.get("checked"):
            (hit,) = await ctx.state.cached([key])
            ctx.metrics.inc("agentq_cache_requests_total", ["workflow_task", "hit" if hit else "miss"])
        if hit is not None:
            outputs_of["output"], outputs_of["transcript"] = hit.pop("output"), hit.pop("transcript", None)
            # a cache entry is the JSON of the summary fields `_run` wrote
            return cast(NodeState, {"status": Status.CACHED, "key": key, **hit})
        return await _run(ctx, tid, record, inputs, key, order, outputs_of)

    result = await batch.end_node(
        work,
        deps=task.get("dependencies", []),
        states=states,
        secrets=lambda: secret_values(record["agent"], ctx.env),
        hostname=ctx.hostname,
    )
    state: NodeState = {**base, **result}
    ended = await ctx.state.end_task(
        ctx.run_id,
        tid,
        state,
        Status.RUNNING,
        outputs_of.get("output"),
        outputs_of.get("transcript"),
        record["dependents"],
        ctx.metrics,  # with the task's end: a run seen finished has all its metrics in Redis
        outputs_of.get("cache"),
    )
    await _release(ctx, record, ended.released)
    if ended.left == 0:
        ctx.finish()


async def _run(
    ctx: WorkflowContext,
    tid: str,
    record: dict[str, Any],
    inputs: list[tuple[str, str, str]],
    key: str,
    order: StartOrder,
    produced: dict[str, Any],
) -> NodeState:
    """Run a task whose result is not cached on AutoGen: its state fields; its output, transcript
    and cache entry go into `produced`. Raises what ends the task (workers/batch.py names it)."""
    await order.admit(tid)  # the CPU from here to the model's line, a few tasks of the process at a time
    if ctx.cancelled is not None and await ctx.cancelled():
        raise RunCancelled()  # nothing new of a cancelled run starts
    task = record["task"]
    secrets = secret_values(record["agent"], ctx.env)
    models = TaskModels(
        ctx.models,
        ctx.limit,
        record.get("rank", 0),
        ctx.settings.model_retries if task.get("retries") is None else task["retries"],
        ctx.settings.model_backoff_seconds,
        ctx.settings.model_max_concurrency,
        ctx.metrics,
        lambda cause: ctx.state.count_retry(ctx.run_id, cause),
        order,
        tid,
        cancelled=ctx.cancelled,
    )
    resolved = substitute_variables(record["agent"], ctx.env)
    component = agent_runtime.load(record["agent"], resolved, models)
    prompt = task_prompt(record["goal"], task, [(dep, out) for dep, _, out in inputs])
    outcome = await agent_runtime.run(component, prompt, task.get("timeout") or ctx.settings.task_timeout_seconds)
    usage = models.usage
    transcript = [{**m, "content": redact(m["content"], secrets)} for m in outcome.transcript]
    output = redact(outcome.output, secrets)
    summary = NodeState(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        calls=usage.calls,
        attempts=usage.attempts,
        stop_reason=outcome.stop_reason,
    )
    if task.get("cache", True):  # written with the task's end (one round trip)
        produced["cache"] = (key, {"output": output, "transcript": transcript, **summary})
    produced["output"], produced["transcript"] = output, transcript
    return NodeState(status=Status.DONE, outcome="ran", key=key, **summary)


async def _release(ctx: WorkflowContext, record: dict[str, Any], released: list[str]) -> None:
    if released:
        ranks = record.get("dependent_ranks") or {}
        await ctx.publish([(tid, *ranks.get(tid, (0, 9))) for tid in released])
