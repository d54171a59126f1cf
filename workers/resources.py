"""Host resources and throttling: each worker reports its host's CPU, memory and disk to Redis
(one scrape of the exporter covers the cluster), and stops consuming new tasks while its host is
above a memory or CPU threshold. Tasks in flight finish; consumption resumes below the threshold."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Any

import psutil
import redis
from celery import bootsteps

from shared.adapters.redis.conn import sync_client
from shared.adapters.redis.keys import HOSTS, THROTTLE, in_flight_key, throttle_key
from shared.adapters.redis.metrics import flush
from shared.metrics import Metrics
from shared.settings import Settings

log = logging.getLogger("agentq.throttle")
HOST_FORGET_SECONDS = 24 * 3600  # a worker silent this long is forgotten


def thresholds(client: redis.Redis, nodename: str, settings: Settings) -> tuple[float, float]:
    """(memory %, cpu %): settings, overridden at run time from Redis (cluster-wide, then per worker)."""
    values = {"memory_percent": settings.throttle_memory_percent, "cpu_percent": settings.throttle_cpu_percent}
    for key in (THROTTLE, throttle_key(nodename)):  # hashes: memory_percent / cpu_percent
        for field, value in client.hgetall(key).items():
            if field in values:
                values[field] = float(value)
    return values["memory_percent"], values["cpu_percent"]


def forget_gone_hosts(client: redis.Redis, before: float) -> None:
    """Drop the heartbeats, and the in-flight records, of workers silent since `before`: a worker
    started under a new name each time (the embedded one) must not grow the hash forever."""
    gone = [str(name) for name, raw in client.hgetall(HOSTS).items() if float(json.loads(raw).get("ts", 0)) < before]
    if gone:
        pipe = client.pipeline(transaction=False)
        pipe.hdel(HOSTS, *gone)
        pipe.delete(*(in_flight_key(name) for name in gone))
        pipe.execute()


def sample() -> dict[str, float]:
    return {
        "cpu": psutil.cpu_percent(interval=None),
        "memory": psutil.virtual_memory().percent,
        "disk": psutil.disk_usage("/").percent,
    }


class ResourceGuard(bootsteps.StartStopStep):  # type: ignore[misc]  # Celery is untyped
    """Consumer bootstep: a thread that samples resources and pauses/resumes this worker's queues."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, c: Any) -> None:
        self._thread = threading.Thread(target=self._run, args=(c,), name="agentq-resources", daemon=True)
        self._thread.start()

    def stop(self, c: Any) -> None:
        self._stop.set()

    def _run(self, c: Any) -> None:
        settings = Settings()
        app = c.app
        nodename = c.hostname
        client = sync_client(app.conf.result_backend, settings.redis_outage_seconds)
        queues = [q.name for q in app.amqp.queues.consume_from.values()] or [app.conf.task_default_queue]
        throttled = False
        psutil.cpu_percent(interval=None)  # prime the CPU counter
        # the first reading at once: it is also this worker's heartbeat (producer/recovery.py)
        while True:
            try:
                now = sample()
                mem_limit, cpu_limit = thresholds(client, nodename, settings)
                over = now["memory"] > mem_limit or now["cpu"] > cpu_limit
                if over != throttled:
                    throttled = over
                    self._switch(app, nodename, queues, throttled, now, mem_limit, cpu_limit)
                    metrics = Metrics()
                    metrics.inc("agentq_throttle_events_total", [nodename, "paused" if throttled else "resumed"])
                    flush(client, metrics)
                forget_gone_hosts(client, time.time() - HOST_FORGET_SECONDS)
                client.hset(
                    HOSTS,
                    nodename,
                    json.dumps(
                        {
                            **now,
                            "host": socket.gethostname(),
                            "queues": queues,  # a run waiting on a queue nobody takes says so (producer/recovery.py)
                            "throttled": throttled,
                            "ts": time.time(),
                        }
                    ),
                )
            except Exception:  # never let monitoring take the worker down
                log.exception("resource check failed")
            if self._stop.wait(settings.resource_interval_seconds):
                break

    @staticmethod
    def _switch(
        app: Any,
        nodename: str,
        queues: list[str],
        throttled: bool,
        now: dict[str, float],
        mem_limit: float,
        cpu_limit: float,
    ) -> None:
        readings = f"memory {now['memory']:.0f}% (limit {mem_limit:g}%), cpu {now['cpu']:.0f}% (limit {cpu_limit:g}%)"
        # Through the broadcast channel, so the worker's own event loop changes its consumers.
        for queue in queues:
            if throttled:
                app.control.cancel_consumer(queue, destination=[nodename])
            else:
                app.control.add_consumer(queue, destination=[nodename])
        if throttled:
            log.warning("throttling %s: %s; not taking new tasks until below", nodename, readings)
        else:
            log.warning("resuming %s: %s; taking tasks again", nodename, readings)
        with app.events.default_dispatcher(hostname=nodename) as dispatcher:
            dispatcher.send("worker-throttled" if throttled else "worker-resumed", **now)
