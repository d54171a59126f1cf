"""Shared set-up for benchmarks: a private redis-server and celery workers, stopped on exit."""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from producer import embedded
from shared.adapters.redis.store import Store
from shared.settings import Settings


@contextmanager
def redis_and_workers(
    workers: int = 1, concurrency: int = 2, env: dict[str, str] | None = None
) -> Iterator[tuple[str, Path]]:
    with tempfile.TemporaryDirectory() as tmp, embedded.LocalServices() as services:
        url, proc = embedded.start_redis(Path(tmp) / "redis")
        services.add_process(proc)
        for i in range(workers):
            services.add_process(
                embedded.start_worker(
                    url, concurrency=concurrency, name=f"bench{i}", env=env, log_path=Path(tmp) / f"worker{i}.log"
                )
            )
        yield url, Path(tmp)


def store_for(url: str) -> Store:
    s = Settings()
    return Store.from_settings(s, url)


def wait_finished(store: Store, run_id: str, timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        meta = store.meta(run_id)
        if meta and meta.finished is not None:
            return meta.finished
        time.sleep(0.01)
    raise TimeoutError(run_id)


def new_run_id() -> str:
    return "bench-" + uuid.uuid4().hex[:8]
