"""Celery tasks: thin shells that load a run from Redis and call the registration code (sync) or
the workflow code (workflow_exec). What a worker process sets up around them: process_setup."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from shared.adapters.redis.store import Store
from shared.adapters.studio import StudioClient
from shared.core import reconcile
from shared.core.records import Component
from shared.core.run_model import NodeState, RunKind, RunMeta, Status
from shared.core.task_names import TaskName
from shared.metrics import Metrics
from shared.ports import StudioError
from shared.run_metrics import record_run
from shared.settings import Settings, environment
from workers import process_setup  # noqa: F401  (its handlers connect to Celery's signals as it is imported)
from workers.celery_app import app, dispatcher
from workers.gallery import write_gallery
from workers.registration import NodeFailed, RunContext
from workers.registration import sync_batch as sync_batch_nodes
from workers.task_base import WorkerTask
from workers.workflow_exec import MessageTaken, WorkflowContext, run_tasks

T = TypeVar("T")
log = logging.getLogger("agentq.tasks")
Loaded = dict[str, bool | str]  # load_component's answer: {"ok": true} or {"ok": false, "error": why}


def _with_context(task: WorkerTask, run_id: str, work: Callable[[RunContext, Settings], Awaitable[T]]) -> T | None:
    settings, store = task.settings, task.store
    meta = store.meta(run_id)
    if meta is None:  # the run expired or never existed
        return None

    metrics = Metrics()
    # the node name (what heartbeats are keyed by) and the message, read on the task's own thread
    hostname, task_id = task.request.hostname or socket.gethostname(), task.request.id

    async def go() -> T:
        client = StudioClient.from_settings(
            settings, meta.studio_url, meta.user_id, max_connections=settings.studio_concurrency, metrics=metrics
        )
        async with client:
            ctx = RunContext(store, run_id, meta, client, environment(), hostname, task_id, settings.local_validation)
            ctx.galleries, ctx.dead_after = task.galleries(), settings.worker_dead_seconds
            try:
                return await work(ctx, settings)
            finally:
                store.add_studio_requests(run_id, client.requests)

    try:
        return task.run_async(go())
    finally:
        store.flush(metrics)


@app.task(name=TaskName.SYNC_BATCH, base=WorkerTask, bind=True)  # type: ignore[untyped-decorator]  # Celery is untyped
def sync_batch(self: WorkerTask, run_id: str, wave: int, index: int) -> int:
    async def work(ctx: RunContext, settings: Settings) -> int:
        if ctx.meta.is_finished:  # redelivered after its run ended: newer work may have followed
            return 0
        labels = ctx.store.batch(run_id, wave, index)
        await sync_batch_nodes(ctx, labels, settings.studio_concurrency)
        return len(labels)

    return _with_context(self, run_id, work) or 0


def _start_wave(store: Store, meta: RunMeta, wave: int) -> None:
    """Publish a sync wave's batches, or the run's last step once every wave has run."""
    if wave >= meta.waves:
        dispatcher.start_finalize(meta.run_id)
        return
    priorities = list(meta.batch_priorities[wave]) if meta.batch_priorities else None
    dispatcher.start_wave(meta.run_id, wave, store.wave_size(meta.run_id, wave), meta.batch_task, priorities)


@app.task(name=TaskName.START_RUN, base=WorkerTask, bind=True, ignore_result=True)  # type: ignore[untyped-decorator]  # Celery is untyped
def start_run(self: WorkerTask, run_id: str) -> None:
    store = self.store
    meta = store.meta(run_id)
    if meta is None or meta.cancelled or not store.claim(run_id, reconcile.START):
        return
    if meta.kind == RunKind.WORKFLOW:
        # the tasks that wait for nothing, critical first (the producer ranked them)
        ready = store.outbox(run_id)
        released = [task for task in store.ready_tasks(run_id) if task[0] in ready]
        dispatcher.publish_tasks(run_id, [released], self.settings.batch_size)
        store.published(run_id, ready)
    else:
        _start_wave(store, meta, 0)


@app.task(name=TaskName.WAVE_DONE, base=WorkerTask, bind=True, ignore_result=True)  # type: ignore[untyped-decorator]  # Celery is untyped
def wave_done(self: WorkerTask, _results: object, run_id: str, wave: int) -> None:
    store = self.store
    meta = store.meta(run_id)
    if meta is None or meta.cancelled or not store.claim(run_id, reconcile.wave_done_item(wave)):
        return
    _start_wave(store, meta, wave + 1)


@app.task(name=TaskName.FINALIZE, base=WorkerTask, bind=True, ignore_result=True)  # type: ignore[untyped-decorator]  # Celery is untyped
def finalize(self: WorkerTask, run_id: str) -> None:
    async def work(ctx: RunContext, _settings: Settings) -> str | None:
        try:
            await write_gallery(ctx)
        except (StudioError, NodeFailed) as exc:
            return f"gallery entry {ctx.meta.gallery_name!r} not written: {exc}"
        return None

    store = self.store
    meta = store.meta(run_id)
    if meta is None or meta.cancelled:  # a cancelled sync writes no gallery entry
        return
    try:
        error = _with_context(self, run_id, work) if meta.gallery_needed else None
    except Exception as exc:  # the run ends all the same: a run never marked finished hangs its producer
        error = f"gallery entry {meta.gallery_name!r} not written: {type(exc).__name__}: {exc}"
    record_run(store, store.finish_run(run_id, error=error or None))


@app.task(name=TaskName.NOOP_BATCH, base=WorkerTask, bind=True)  # type: ignore[untyped-decorator]  # Celery is untyped
def noop_batch(self: WorkerTask, run_id: str, wave: int, index: int) -> int:
    """A batch whose nodes do no work: measures what scheduling and run state cost (benchmarks)."""
    store = self.store
    labels = store.batch(run_id, wave, index)
    done = {lbl: NodeState(status=Status.DONE, outcome="unchanged", finished=time.time()) for lbl in labels}
    store.set_states(run_id, done, {lbl: Status.PENDING for lbl in labels})
    return len(labels)


@app.task(name=TaskName.NOOP)  # type: ignore[untyped-decorator]  # Celery is untyped
def noop(*_args: object) -> None:
    """One no-op task: the per-task baseline for benchmarks."""


@app.task(name=TaskName.RUN_TASKS, base=WorkerTask, bind=True, ignore_result=True)  # type: ignore[untyped-decorator]  # Celery is untyped
def run_workflow_tasks(self: WorkerTask, run_id: str, task_ids: list[str]) -> int:
    """Workflow tasks released together: each runs on AutoGen and releases its dependents when it ends."""
    store = self.store
    meta = store.meta(run_id)
    if meta is None or meta.cancelled:  # nothing of a cancelled run starts
        return 0

    def finish() -> None:
        if store.claim(run_id, reconcile.FINISHED):
            record_run(store, store.finish_run(run_id))

    # the request is this thread's, not the loop's
    hostname, task_id = self.request.hostname or socket.gethostname(), self.request.id

    async def go() -> None:
        ctx = WorkflowContext(
            self.run_state(),
            run_id,
            meta,
            environment(),
            self.settings,
            hostname,
            task_id,
            self.model_clients(),
            self.limit,
            lambda items: self.releases().publish(run_id, items),
            finish,
            self.admission(),
            cancelled=self.cancel_check(run_id),
            here=self.running_here(),
            reconnected=self.reconnected(),
        )
        try:
            await run_tasks(ctx, task_ids)
        except MessageTaken as exc:  # its tasks run elsewhere: nothing of this copy is written
            log.warning("stopped this copy of a message: another worker process runs or ended its tasks: %s", exc)
        finally:
            store.flush(ctx.metrics)

    self.run_async(go())
    return len(task_ids)


@app.task(name=TaskName.LOAD_COMPONENT, base=WorkerTask, bind=True)  # type: ignore[untyped-decorator]  # Celery is untyped
def load_component(self: WorkerTask, spec: Component) -> Loaded:
    """Load one component with AutoGen on this worker, `${VAR}` resolved here: {"ok": true} or
    {"ok": false, "error": why}. Runs nothing; what Studio's validation checks, on the worker."""
    from shared.core.refs import MissingVariable, redact, secret_values, substitute_variables
    from workers.agent_runtime import AgentError
    from workers.agent_runtime import load_component as load_with_autogen
    from workers.model_client import TaskModels

    async def go() -> Loaded:
        models = TaskModels(
            self.model_clients(), self.limit, 0, 0, 0.0, self.settings.model_max_concurrency, Metrics(), _no_retry_count
        )
        try:
            load_with_autogen(spec, substitute_variables(spec, environment()), models)
        except MissingVariable as exc:
            return {
                "ok": False,
                "error": f"environment variable {exc.name} is not set on this worker (field {exc.field})",
            }
        except AgentError as exc:
            return {"ok": False, "error": redact(str(exc), secret_values(spec, environment()))}
        finally:
            await models.close()
        return {"ok": True}

    return self.run_async(go())


async def _no_retry_count(_cause: str) -> None:
    """Loading makes no model request, so there is nothing to count."""
