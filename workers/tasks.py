"""Celery tasks: thin shells that load a run from Redis and call the registration code."""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import redis.asyncio as aioredis

from shared.settings import Settings, environment
from shared.metrics import Metrics
from shared.run_metrics import record_run
from shared.store import Store
from shared.studio import StudioClient, StudioError
from workers.canvas import start_finalize, start_wave
from workers.celery_app import app
from workers.gallery import write_gallery
from workers.registration import RunContext, sync_batch as sync_batch_nodes
from workers.workflow_exec import WorkflowContext, run_batch as run_workflow_batch

T = TypeVar("T")


def _store(settings: Settings) -> Store:
    return Store.from_url(app.conf.broker_url, cache_ttl=settings.cache_ttl_seconds, run_ttl=settings.run_ttl_seconds)


def _with_context(run_id: str, work: Callable[[RunContext, Settings], Awaitable[T]]) -> T | None:
    settings = Settings()
    store = _store(settings)
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
        return asyncio.run(go())
    finally:
        metrics.flush(store.r)


@app.task(name="agentq.sync_batch")
def sync_batch(run_id: str, wave: int, index: int) -> int:
    async def work(ctx: RunContext, settings: Settings) -> int:
        labels = ctx.store.batch(run_id, wave, index)
        await sync_batch_nodes(ctx, labels, settings.studio_concurrency)
        return len(labels)

    return _with_context(run_id, work) or 0


def _priorities(meta: dict[str, Any], wave: int) -> list[int] | None:
    priorities = meta.get("batch_priorities")
    return priorities[wave] if priorities else None


@app.task(name="agentq.start_run", ignore_result=True)
def start_run(run_id: str) -> None:
    store = _store(Settings())
    meta = store.meta(run_id)
    if meta is None or not store.claim(run_id, "start"):
        return
    if meta["waves"]:
        start_wave(app, run_id, 0, store.wave_size(run_id, 0), meta.get("batch_task", "agentq.sync_batch"),
                   _priorities(meta, 0))
    else:
        start_finalize(app, run_id)


@app.task(name="agentq.wave_done", ignore_result=True)
def wave_done(_results: Any, run_id: str, wave: int) -> None:
    store = _store(Settings())
    meta = store.meta(run_id)
    if meta is None or not store.claim(run_id, f"wave-done:{wave}"):
        return
    if wave + 1 < meta["waves"]:
        start_wave(app, run_id, wave + 1, store.wave_size(run_id, wave + 1), meta.get("batch_task", "agentq.sync_batch"),
                   _priorities(meta, wave + 1))
    else:
        start_finalize(app, run_id)


@app.task(name="agentq.finalize", ignore_result=True)
def finalize(run_id: str) -> None:
    async def work(ctx: RunContext, _settings: Settings) -> str | None:
        try:
            await write_gallery(ctx)
        except StudioError as exc:
            return f"gallery entry {ctx.meta['gallery_name']!r} not written: {exc}"
        return None

    store = _store(Settings())
    meta = store.meta(run_id)
    if meta is None:
        return
    error = _with_context(run_id, work) if meta.get("gallery_needed") else None
    fields: dict[str, Any] = {"state": "finished", "finished": time.time()}
    if error:
        fields["error"] = error
    meta = store.update_meta(run_id, **fields)
    record_run(store, meta)


@app.task(name="agentq.noop_batch")
def noop_batch(run_id: str, wave: int, index: int) -> int:
    """A batch whose nodes do no work: measures what scheduling and run state cost (benchmarks)."""
    store = _store(Settings())
    labels = store.batch(run_id, wave, index)
    done = {lbl: {"status": "done", "outcome": "unchanged", "finished": time.time()} for lbl in labels}
    store.set_states(run_id, done, {lbl: "pending" for lbl in labels})
    return len(labels)


@app.task(name="agentq.noop")
def noop(*_args: Any) -> None:
    """One no-op task: the per-task baseline for benchmarks."""


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One per worker process: building it (loading the CA bundle) costs ~30 ms."""
    return ssl.create_default_context()


@app.task(name="agentq.run_batch", bind=True)
def run_batch(self: Any, run_id: str, wave: int, index: int) -> int:
    settings = Settings()
    store = _store(settings)
    meta = store.meta(run_id)
    if meta is None:
        return 0
    labels = store.batch(run_id, wave, index)

    async def go() -> None:
        # A few shared connections: each new redis-py connection costs ~2 ms of CPU to set up.
        pool = aioredis.BlockingConnectionPool.from_url(app.conf.broker_url, max_connections=4, decode_responses=True)
        aredis = aioredis.Redis(connection_pool=pool)
        limits = httpx.Limits(max_connections=max(10, settings.batch_size * 2))
        async with httpx.AsyncClient(timeout=settings.model_timeout_seconds, limits=limits, verify=_tls_context()) as http:
            ctx = WorkflowContext(store, aredis, run_id, meta, http, environment(), settings,
                                  self.request.hostname or socket.gethostname())
            try:
                await run_workflow_batch(ctx, labels)
            finally:
                await aredis.aclose()
                ctx.metrics.flush(store.r)

    asyncio.run(go())
    return len(labels)
