"""Celery tasks: thin shells that load a run from Redis and call the registration code."""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from shared.metrics import Metrics
from shared.run_metrics import record_run
from shared.settings import Settings, environment
from shared.studio import StudioClient, StudioError
from workers.canvas import start_finalize, start_wave
from workers.celery_app import app
from workers.gallery import write_gallery
from workers.registration import RunContext
from workers.registration import sync_batch as sync_batch_nodes
from workers.task_base import WorkerTask
from workers.workflow_exec import WorkflowContext
from workers.workflow_exec import run_batch as run_workflow_batch

T = TypeVar("T")


def _with_context(task: WorkerTask, run_id: str, work: Callable[[RunContext, Settings], Awaitable[T]]) -> T | None:
    settings, store = task.settings, task.store
    meta = store.meta(run_id)
    if meta is None:  # the run expired or never existed
        return None

    metrics = Metrics()

    async def go() -> T:
        token = settings.studio_token.get_secret_value() if settings.studio_token else None
        client = StudioClient(
            meta["studio_url"],
            meta["user_id"],
            token=token,
            timeout=settings.studio_timeout_seconds,
            retries=settings.studio_retries,
            backoff=settings.studio_backoff_seconds,
            max_connections=settings.studio_concurrency,
            metrics=metrics,
        )
        async with client:
            ctx = RunContext(store, run_id, meta, client, environment(), socket.gethostname())
            try:
                return await work(ctx, settings)
            finally:
                if client.requests:
                    pipe = store.r.pipeline(transaction=False)
                    for name, count in client.requests.items():
                        pipe.hincrby(store.run_key(run_id, "requests"), name, count)
                    pipe.expire(store.run_key(run_id, "requests"), store.run_ttl)
                    pipe.execute()

    try:
        return task.run_async(go())
    finally:
        metrics.flush(store.r)


@app.task(name="agentq.sync_batch", base=WorkerTask, bind=True)
def sync_batch(self: WorkerTask, run_id: str, wave: int, index: int) -> int:
    async def work(ctx: RunContext, settings: Settings) -> int:
        labels = ctx.store.batch(run_id, wave, index)
        await sync_batch_nodes(ctx, labels, settings.studio_concurrency)
        return len(labels)

    return _with_context(self, run_id, work) or 0


def _priorities(meta: dict[str, Any], wave: int) -> list[int] | None:
    priorities = meta.get("batch_priorities")
    return priorities[wave] if priorities else None


@app.task(name="agentq.start_run", base=WorkerTask, bind=True, ignore_result=True)
def start_run(self: WorkerTask, run_id: str) -> None:
    store = self.store
    meta = store.meta(run_id)
    if meta is None or not store.claim(run_id, "start"):
        return
    if meta["waves"]:
        start_wave(app, run_id, 0, store.wave_size(run_id, 0), meta.get("batch_task", "agentq.sync_batch"),
                   _priorities(meta, 0))
    else:
        start_finalize(app, run_id)


@app.task(name="agentq.wave_done", base=WorkerTask, bind=True, ignore_result=True)
def wave_done(self: WorkerTask, _results: Any, run_id: str, wave: int) -> None:
    store = self.store
    meta = store.meta(run_id)
    if meta is None or not store.claim(run_id, f"wave-done:{wave}"):
        return
    if wave + 1 < meta["waves"]:
        start_wave(app, run_id, wave + 1, store.wave_size(run_id, wave + 1), meta.get("batch_task", "agentq.sync_batch"),
                   _priorities(meta, wave + 1))
    else:
        start_finalize(app, run_id)


@app.task(name="agentq.finalize", base=WorkerTask, bind=True, ignore_result=True)
def finalize(self: WorkerTask, run_id: str) -> None:
    async def work(ctx: RunContext, _settings: Settings) -> str | None:
        try:
            await write_gallery(ctx)
        except StudioError as exc:
            return f"gallery entry {ctx.meta['gallery_name']!r} not written: {exc}"
        return None

    store = self.store
    meta = store.meta(run_id)
    if meta is None:
        return
    error = _with_context(self, run_id, work) if meta.get("gallery_needed") else None
    fields: dict[str, Any] = {"state": "finished", "finished": time.time()}
    if error:
        fields["error"] = error
    meta = store.update_meta(run_id, **fields)
    record_run(store, meta)


@app.task(name="agentq.noop_batch", base=WorkerTask, bind=True)
def noop_batch(self: WorkerTask, run_id: str, wave: int, index: int) -> int:
    """A batch whose nodes do no work: measures what scheduling and run state cost (benchmarks)."""
    store = self.store
    labels = store.batch(run_id, wave, index)
    done = {lbl: {"status": "done", "outcome": "unchanged", "finished": time.time()} for lbl in labels}
    store.set_states(run_id, done, {lbl: "pending" for lbl in labels})
    return len(labels)


@app.task(name="agentq.noop")
def noop(*_args: Any) -> None:
    """One no-op task: the per-task baseline for benchmarks."""


@app.task(name="agentq.run_batch", base=WorkerTask, bind=True)
def run_batch(self: WorkerTask, run_id: str, wave: int, index: int) -> int:
    store = self.store
    meta = store.meta(run_id)
    if meta is None:
        return 0
    labels = store.batch(run_id, wave, index)

    async def go() -> None:
        ctx = WorkflowContext(store, await self.async_redis(), run_id, meta, await self.model_http(), environment(),
                              self.settings, self.request.hostname or socket.gethostname())
        try:
            await run_workflow_batch(ctx, labels)
        finally:
            ctx.metrics.flush(store.r)

    self.run_async(go())
    return len(labels)
