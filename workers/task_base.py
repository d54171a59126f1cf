"""What a worker process keeps between tasks: settings, a Redis pool, one event loop, and the
async clients that live on it.

Building these per task costs more CPU than a batch's own work: a new redis-py connection reads
package metadata (~2 ms), a new TCP connection per model request shows up in every profile, and
asyncio.run builds and tears down a loop each time. Every task type shares one set, held by the
Celery app (the one piece of process state the worker already has).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import redis.asyncio as aioredis
from celery import Task

from shared.model_http import model_http_client
from shared.settings import Settings
from shared.store import Store

T = TypeVar("T")


@dataclass
class _Resources:
    pid: int
    settings: Settings
    store: Store
    runner: asyncio.Runner = field(default_factory=asyncio.Runner)
    http: httpx.AsyncClient | None = None
    aredis: aioredis.Redis | None = None

    def close(self) -> None:
        if self.pid != os.getpid():  # inherited through fork: the parent's to close
            return
        if self.http is not None:
            self.runner.run(self.http.aclose())
        if self.aredis is not None:
            self.runner.run(self.aredis.aclose())
        self.runner.close()


class WorkerTask(Task):  # type: ignore[misc]
    abstract = True

    def _resources(self) -> _Resources:
        # one set per thread (a threads pool shares the app) and per process (a prefork child
        # must not reuse its parent's sockets)
        local = self.app.__dict__.setdefault("_agentq_resources", threading.local())
        res: _Resources | None = getattr(local, "res", None)
        if res is None or res.pid != os.getpid():
            settings = Settings()
            store = Store.from_url(self.app.conf.broker_url, cache_ttl=settings.cache_ttl_seconds,
                                   run_ttl=settings.run_ttl_seconds)
            res = local.res = _Resources(os.getpid(), settings, store)
            atexit.register(res.close)
        return res

    @property
    def settings(self) -> Settings:
        return self._resources().settings

    @property
    def store(self) -> Store:
        return self._resources().store

    def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on this process's event loop (kept, so its clients' connections are too)."""
        return self._resources().runner.run(coro)

    async def model_http(self) -> httpx.AsyncClient:
        """The HTTP client for model endpoints; call from inside `run_async`."""
        res = self._resources()
        if res.http is None:
            res.http = model_http_client(res.settings.model_timeout_seconds, max(10, res.settings.batch_size * 2))
        return res.http

    async def async_redis(self) -> aioredis.Redis:
        """A small shared pool: each new redis-py connection costs ~2 ms of CPU to set up."""
        res = self._resources()
        if res.aredis is None:
            pool = aioredis.BlockingConnectionPool.from_url(self.app.conf.broker_url, max_connections=4,
                                                            decode_responses=True)
            res.aredis = aioredis.Redis(connection_pool=pool)
        return res.aredis
