"""Run workflow tasks on AutoGen. Each task ends on its own: its output, cache entry and state are
written, and the tasks that were waiting only for it are published at once, whatever else the
same message carried."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field

from shared.adapters.redis.async_state import AsyncRunState, Ended, TaskEnd
from shared.core.components import TYPE_MISMATCH
from shared.core.exceptions import RunCancelled
from shared.core.prompts import task_key, task_prompt
from shared.core.records import CacheEntry, TaskRecord, TranscriptMessage
from shared.core.refs import file_at, redact, redact_all, secret_values, substitute_variables
from shared.core.run_model import TERMINAL, NodeState, RunMeta, Status, TaskUsage
from shared.metrics import Metrics
from shared.ports import ModelLimit
from shared.settings import Settings
from workers import agent_runtime, batch
from workers.model_client import ModelClients, StartOrder, TaskModels
from workers.task_models import Usage
from workers.type_check import confirmed

log = logging.getLogger(__name__)


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
    here: set[tuple[str, str]] = field(default_factory=set)  # (run, task) this process runs now
    reconnected: float = 0.0  # when this process's consumer last connected again to a broker it had lost


async def run_tasks(ctx: WorkflowContext, task_ids: list[str]) -> None:
    records, states, outputs = await _unless_held(ctx, task_ids)
    todo = [t for t in task_ids if t in records]
    claimed = batch.claim(todo, states, ctx.hostname, ctx.task_id)
    ours = {(ctx.run_id, t) for t in claimed.todo}
    ctx.here.update(ours)  # at once: another copy in this process waits from now on
    try:
        for tid in [t for t in todo if batch.status_of(states, t) in TERMINAL]:
            # redelivered after it ended: publish only what it released and nobody published
            end = TaskEnd(tid, states[tid], states[tid].status, records[tid]["dependents"], counted=False)
            await _ended(ctx, records[tid], await ctx.state.end_task(ctx.run_id, end, ctx.metrics))
        if not claimed.todo:
            return
        await ctx.state.set_states(ctx.run_id, claimed.running, claimed.previous)
        ranked = sorted(claimed.todo, key=lambda t: -records[t]["rank"])
        tasks = _Tasks(
            ctx, records, claimed.running, batch.Ender(states, ctx.hostname), outputs, StartOrder(ranked, ctx.admission)
        )
        await _fenced(ctx, ranked, lambda tid: _one(tasks, tid))
    finally:
        ctx.here.difference_update(ours)


async def _unless_held(
    ctx: WorkflowContext, task_ids: list[str]
) -> tuple[dict[str, TaskRecord], dict[str, NodeState], dict[str, str]]:
    """The tasks' records, states and inputs' outputs, once none of them runs on another live
    worker process: a broker that restarted (RabbitMQ) hands back the messages of connections it
    lost, those of live workers too, whose tasks go on. Their copy waits, and takes over only the
    tasks of a worker that dies meanwhile (it stays unacknowledged until then, the safety net)."""
    mine = (ctx.hostname, os.getpid())
    while True:
        loaded = await ctx.state.load(ctx.run_id, task_ids)
        held = {t for t in task_ids if (ctx.run_id, t) in ctx.here}  # this process's own copy runs them
        held |= await ctx.state.held_alive(loaded[1], mine, ctx.settings.worker_dead_seconds, ctx.reconnected)
        if not held or (ctx.cancelled is not None and await ctx.cancelled()):
            return loaded
        await asyncio.sleep(FENCE_SECONDS)


class MessageTaken(Exception):
    """Tasks of this worker's message were taken from it: another copy of their message runs them
    (or ended them). Raised once the message's other tasks, still this process's, have ended."""


FENCE_SECONDS = 2.0  # how often a message's tasks are looked at: still this process's?


async def _fenced(ctx: WorkflowContext, task_ids: list[str], run_one: Callable[[str], Awaitable[None]]) -> None:
    """`run_one` for each task, each stopped once it is taken from this process: a worker cut off
    past WORKER_DEAD_SECONDS had its message requeued, and another worker (or this one's next
    process) claimed its tasks or ended them. Its copy would go on paying model calls for them,
    holding model slots, for up to the task's timeout after the partition healed.

    Only the tasks taken stop. A copy elsewhere need not carry this message's tasks as it does (the
    producer sends a gone worker's tasks again batch_size to a message, RabbitMQ hands back each
    message as it was): it may take one of them and not another, whose copies wait for this
    process while it lives (_unless_held). Stopped with the rest, that task would be left running
    here, ended by nobody, and its run would never finish."""
    runs = {tid: asyncio.ensure_future(run_one(tid)) for tid in task_ids}
    mine = (ctx.hostname, os.getpid())
    taken: dict[str, str | None] = {}  # task id -> the worker its state names now
    try:
        while open_ids := [t for t, f in runs.items() if not f.done()]:
            await asyncio.wait([runs[t] for t in open_ids], timeout=FENCE_SECONDS)
            open_ids = [t for t in open_ids if not runs[t].done()]
            if not open_ids:
                break
            try:
                now = await ctx.state.states(ctx.run_id, open_ids)
            except Exception:  # noqa: BLE001  # Redis out of reach: the tasks' own calls say so
                continue
            for tid, st in now.items():
                if (st.worker, st.pid) != mine and tid not in taken:
                    taken[tid] = st.worker
                    runs[tid].cancel()
    except asyncio.CancelledError:  # the message's own end (its timeout, a shutdown) ends its tasks too
        for f in runs.values():
            f.cancel()
        raise
    ended = await asyncio.gather(*runs.values(), return_exceptions=True)
    for tid, outcome in zip(runs, ended, strict=True):
        if isinstance(outcome, BaseException) and tid not in taken:
            raise outcome
    if taken:
        names = sorted(taken)
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        raise MessageTaken(f"{', '.join(names[:5])}{more} of run {ctx.run_id} went to {taken[names[0]]}")


@dataclass(frozen=True)
class _Tasks:
    """The tasks one message runs: their records and running states, what ends each (with the
    states of their inputs), the inputs' outputs, and the order they reach their models in."""

    ctx: WorkflowContext
    records: Mapping[str, TaskRecord]
    running: Mapping[str, NodeState]
    ender: batch.Ender
    outputs: Mapping[str, str]
    order: StartOrder


async def _one(tasks: _Tasks, tid: str) -> None:
    try:
        await _end_one(tasks, tid)
    finally:
        tasks.order.queued(tid)  # ended, or never reached a model: the tasks behind it go on


@dataclass
class _Produced:
    """A task's output, transcript and cache entry, when it has them."""

    output: str | None = None
    transcript: list[TranscriptMessage] | None = None
    cache: tuple[str, CacheEntry] | None = None
    usage: Usage | None = None  # its model requests so far: a failed task's cost is shown too


async def _end_one(tasks: _Tasks, tid: str) -> None:
    ctx, record = tasks.ctx, tasks.records[tid]
    task = record["task"]
    produced = _Produced()

    async def work() -> NodeState:
        states = tasks.ender.states
        inputs = [(dep, states[dep].key or "", tasks.outputs.get(dep, "")) for dep in task["dependencies"]]
        key = task_key(record["goal"], task, record["agent"], inputs, record["agent_key"])
        hit = await _cached(ctx, record, key)
        if hit is None:
            return await _run(ctx, tid, record, inputs, key, tasks.order, produced)
        produced.output, produced.transcript = hit.pop("output"), hit.pop("transcript", None)
        # a cache entry is the JSON of the summary fields `_run` wrote
        return NodeState.model_validate({"status": Status.CACHED, "key": key, **hit})

    result = await tasks.ender.end(work, task["dependencies"], lambda: secret_values(record["agent"], ctx.env))
    # a task that failed, or that a cancel stopped mid-run, shows what its model calls cost too
    if result.status in (Status.FAILED, Status.SKIPPED) and produced.usage is not None and produced.usage.attempts:
        result = result.model_copy(update=asdict(produced.usage))
    state = tasks.running[tid].merged(result)
    end = TaskEnd(
        tid, state, Status.RUNNING, record["dependents"], produced.output, produced.transcript, produced.cache
    )
    # the worker's metrics go with the task's end: a run seen finished has all its metrics in Redis
    await _ended(ctx, record, await ctx.state.end_task(ctx.run_id, end, ctx.metrics))


async def _cached(ctx: WorkflowContext, record: TaskRecord, key: str) -> CacheEntry | None:
    """The task's cache entry, unless it is not to be cached or the producer looked already."""
    if not record["task"]["cache"] or ctx.meta.no_cache or record["checked"]:
        return None
    (hit,) = await ctx.state.cached([key])
    ctx.metrics.inc("agentq_cache_requests_total", ["workflow_task", "hit" if hit else "miss"])
    return hit


async def _ended(ctx: WorkflowContext, record: TaskRecord, ended: Ended) -> None:
    """Publish what a task's end released; the run's last end finishes it."""
    await _release(ctx, record, ended.released)
    if ended.left == 0:
        ctx.finish()


async def _run(
    ctx: WorkflowContext,
    tid: str,
    record: TaskRecord,
    inputs: list[tuple[str, str, str]],
    key: str,
    order: StartOrder,
    produced: _Produced,
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
        record["rank"],
        ctx.settings.model_retries if task["retries"] is None else task["retries"],
        ctx.settings.model_backoff_seconds,
        ctx.settings.model_max_concurrency,
        ctx.metrics,
        lambda cause: _count_retry(ctx, cause),
        order,
        tid,
        cancelled=ctx.cancelled,
        task_retries=task["retries"] is not None,
    )
    produced.usage = models.usage
    said: list[agent_runtime.Entry] = []
    try:
        outcome = await _load_and_run(ctx, record, inputs, models, said)
    except Exception:
        # a failed team task shows the turns before it failed
        produced.transcript = redact_all(said, secrets) or None
        raise
    finally:
        await models.close()
    transcript = redact_all(outcome.transcript, secrets)  # tool calls' arguments and results too
    output = redact(outcome.output, secrets)
    summary = TaskUsage(**asdict(models.usage), stop_reason=outcome.stop_reason).model_dump()
    if task["cache"]:  # written with the task's end (one round trip)
        produced.cache = (key, {"output": output, "transcript": transcript, **summary})
    produced.output, produced.transcript = output, transcript
    return NodeState.model_validate({"status": Status.DONE, "outcome": "ran", "key": key, **summary})


async def _count_retry(ctx: WorkflowContext, cause: str) -> None:
    """A retry counted in the run; one that Redis cannot take is lost, not the task's end (its
    message would end unacknowledged, the task left running in a run that finishes)."""
    try:
        await ctx.state.count_retry(ctx.run_id, cause)
    except Exception as exc:  # noqa: BLE001  # Redis' own errors, whichever client raised them
        log.warning("a retry of run %s was not counted: %s", ctx.run_id, exc)


async def _load_and_run(
    ctx: WorkflowContext,
    record: TaskRecord,
    inputs: list[tuple[str, str, str]],
    models: TaskModels,
    said: list[agent_runtime.Entry],
) -> agent_runtime.Outcome:
    task = record["task"]
    resolved = substitute_variables(record["agent"], ctx.env)
    try:
        component = agent_runtime.load(record["agent"], resolved, models)
    except agent_runtime.AgentError as exc:  # the file is the user's to mend: named first
        path, inside = file_at(record["agent_files"], exc.at)
        where = f"{path or record['agent_path']}{f' ({inside})' if inside else ''}"
        mistyped = confirmed(resolved, record["mistyped"]) if record["mistyped"] and TYPE_MISMATCH in str(exc) else []
        raise agent_runtime.AgentError(f"{where}: {exc}{''.join(f'; {m}' for m in mistyped)}") from exc
    prompt = task_prompt(record["goal"], task, [(dep, out) for dep, _, out in inputs])
    try:
        return await agent_runtime.run(component, prompt, task["timeout"] or ctx.settings.task_timeout_seconds, said)
    except agent_runtime.TaskTimedOut as exc:
        if models.retrying is None:
            raise
        raise agent_runtime.TaskTimedOut(f"{exc}, waiting to retry its model (last: {models.retrying})") from exc


async def _release(ctx: WorkflowContext, record: TaskRecord, released: list[str]) -> None:
    if released:
        ranks = record["dependent_ranks"]
        await ctx.publish([(tid, *ranks.get(tid, (0, 9))) for tid in released])
