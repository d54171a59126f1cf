"""What a worker process keeps between tasks: settings, Redis clients, one event loop in a thread
of its own, the model clients AutoGen loaded, and the cluster-wide limits.

Every task of the process runs its coroutine on that one loop, whatever Celery pool runs the
task: with the threads pool (the default, see shared/adapters/celery.py) a Celery thread hands its
coroutine to the loop and waits, so many tasks share one loop, one set of connections and one
model client per configuration. Building these per task costs more CPU than a task's own work:
a new redis-py connection reads package metadata (~2 ms), loading an OpenAI client ~50 ms.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from celery import Celery, Task

from shared.adapters.redis.conn import AsyncRedis, async_client
from shared.adapters.redis.keys import limit_name
from shared.adapters.redis.semaphore import PrioritySemaphore
from shared.adapters.redis.store import AsyncRunState, Store
from shared.core.exceptions import TaskFailed
from shared.settings import Settings
from workers.releases import Released, Releases

if TYPE_CHECKING:
    from workers.model_pool import ModelClients

T = TypeVar("T")
log = logging.getLogger("agentq.worker")
CANCEL_CHECK_EVERY = 0.5  # seconds
CANCEL_ASK_SECONDS = 2.0  # past it, a cancel check takes the answer before
ADMITTED = 8  # a few: enough to keep a model's line fed, few enough that answers are read between them


def _loop_thread() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=_serve, args=(loop,), name="agentq-loop", daemon=True)
    thread.start()
    return loop, thread


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """Run the process's loop until it is stopped. A task that raises SystemExit or
    KeyboardInterrupt (a tool's code calling sys.exit) has asyncio raise it out of the loop too
    (after setting it on the task): the loop, which every task of the process shares, goes on, and
    what awaited that task gets it (workers/agent_runtime.py says it as the task's failure)."""
    while True:
        try:
            loop.run_forever()
            return
        except (SystemExit, KeyboardInterrupt) as exc:
            log.warning("a task's code raised %s; the event loop goes on", type(exc).__name__)


@dataclass
class _Resources:
    pid: int
    settings: Settings
    store: Store
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    aredis: AsyncRedis | None = None
    models: ModelClients | None = None
    releases: Releases | None = None
    limits: dict[str, PrioritySemaphore] = field(default_factory=dict)
    # workflow tasks of this process between their start and their place in a model's line
    # (workers/start_order.py StartOrder)
    admission: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(ADMITTED))
    # run id -> (when asked, whether `producer cancel` ended it): asked at most every CANCEL_CHECK_EVERY;
    # one question in flight per run, which those that ask meanwhile wait for (not the answer before)
    cancelled: dict[str, tuple[float, bool]] = field(default_factory=dict)
    asking: dict[str, asyncio.Future[bool]] = field(default_factory=dict)
    # (run, task) of the workflow tasks this process runs now: another copy of their message waits
    running: set[tuple[str, str]] = field(default_factory=set)
    # (namespace, gallery name) -> the config this process last wrote there (workers/gallery.py)
    galleries: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # when this process's consumer last connected again to a broker it had lost (workers/resources.py)
    reconnected: float = 0.0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return asyncio.run_coroutine_threadsafe(coro, self.loop).result()
        except Exception:
            raise
        except BaseException as exc:  # SystemExit, GeneratorExit ... of a tool's, not this process's: see _serve
            raise TaskFailed(f"the task's code raised {type(exc).__name__}") from None

    def close(self) -> None:
        if self.pid != os.getpid():  # inherited through fork: the parent's to close
            return

        async def close_clients() -> None:
            if self.models is not None:
                await self.models.close()
            if self.aredis is not None:
                await self.aredis.aclose()

        try:
            self.run(close_clients())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


def process_resources(app: Celery) -> _Resources:
    """The worker process's resources: one set per process, kept on the app and shared by the
    pool's threads (a prefork child builds its own: it must not reuse its parent's sockets, and the
    parent's loop thread did not survive fork)."""
    res: _Resources | None = app.__dict__.get("_agentq_resources")
    if res is not None and res.pid == os.getpid():
        return res
    with app.__dict__.setdefault("_agentq_resources_lock", threading.Lock()):
        res = app.__dict__.get("_agentq_resources")
        if res is None or res.pid != os.getpid():
            from workers.celery_app import settings  # read and checked once, as the app was made

            # the result backend is Redis whichever broker carries the messages
            store = Store.from_settings(settings, app.conf.result_backend)
            res = _Resources(os.getpid(), settings, store, *_loop_thread())
            app.__dict__["_agentq_resources"] = res
            atexit.register(res.close)
    return res


class WorkerTask(Task):  # type: ignore[misc]  # Celery is untyped
    abstract = True

    def _resources(self) -> _Resources:
        return process_resources(self.app)

    @property
    def settings(self) -> Settings:
        return self._resources().settings

    @property
    def store(self) -> Store:
        return self._resources().store

    def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on this process's event loop and wait for it (call from a pool thread)."""
        return self._resources().run(coro)

    def async_redis(self) -> AsyncRedis:
        """A shared pool: each new redis-py connection costs ~2 ms of CPU to set up."""
        res = self._resources()
        if res.aredis is None:
            res.aredis = async_client(self.app.conf.result_backend, res.settings.redis_outage_seconds)
        return res.aredis

    def run_state(self) -> AsyncRunState:
        return AsyncRunState(self.async_redis(), self.store)

    def model_clients(self) -> ModelClients:
        res = self._resources()
        if res.models is None:
            from workers.model_pool import ModelClients

            res.models = ModelClients(res.settings.model_timeout_seconds)
        return res.models

    def releases(self) -> Releases:
        """Where workflow tasks released on this process are published (call on the loop)."""
        res = self._resources()
        if res.releases is None:
            from workers.celery_app import dispatcher  # the process's one

            def send(run_id: str, groups: list[list[Released]]) -> None:
                dispatcher.publish_tasks(run_id, groups, res.settings.batch_size)
                res.store.published(run_id, [tid for group in groups for tid, _, _ in group])

            res.releases = Releases(send)
        return res.releases

    def galleries(self) -> dict[tuple[str, str], dict[str, Any]]:
        return self._resources().galleries

    def admission(self) -> asyncio.Semaphore:
        return self._resources().admission

    def running_here(self) -> set[tuple[str, str]]:
        return self._resources().running

    def reconnected(self) -> float:
        """When this process's consumer last connected again to a broker it had lost (0: never)."""
        return self._resources().reconnected

    def cancel_check(self, run_id: str) -> Callable[[], Awaitable[bool]]:
        """Whether the run was cancelled, asked of Redis at most every CANCEL_CHECK_EVERY seconds per
        process (thousands of tasks starting cost no round trip each). Call on the loop."""
        res = self._resources()

        async def ask() -> bool:
            try:
                answer = await self.run_state().cancelled(run_id)
            finally:
                res.asking.pop(run_id, None)
            res.cancelled[run_id] = (time.monotonic(), answer)
            if len(res.cancelled) > 1000:  # old runs' answers go
                res.cancelled = dict(list(res.cancelled.items())[-100:])
            return answer

        async def cancelled() -> bool:
            asked, answer = res.cancelled.get(run_id, (0.0, False))
            if answer or time.monotonic() - asked <= CANCEL_CHECK_EVERY:
                return answer
            question = res.asking.get(run_id)
            if question is None:
                question = res.asking[run_id] = asyncio.ensure_future(ask())
                question.add_done_callback(lambda done: done.cancelled() or done.exception())  # seen, if no one waits
            try:
                # Redis slow or away (it is ridden out for REDIS_OUTAGE_SECONDS): the answer before
                # stands, rather than every model call waiting out the outage
                return await asyncio.wait_for(asyncio.shield(question), CANCEL_ASK_SECONDS)
            except Exception:  # noqa: BLE001  # the run's own writes say what is wrong with Redis
                return answer

        return cancelled

    def limit(self, key: str, limit: int) -> PrioritySemaphore:
        """The process's handle on a cluster-wide limit: one per key, so the waiters of every task
        in this process ask Redis together."""
        res = self._resources()
        name = limit_name(key)
        semaphore = res.limits.get(name)
        if semaphore is None or semaphore.limit != max(1, limit):
            semaphore = res.limits[name] = PrioritySemaphore(self.async_redis(), name, limit)
        return semaphore
