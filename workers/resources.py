"""Host resources and throttling: each worker reports its host's CPU, memory and disk to Redis
(one scrape of the exporter covers the cluster), and stops consuming new tasks while its host is
above a memory or CPU threshold. Tasks in flight finish; consumption resumes below the threshold."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

import psutil
from celery import Celery, bootsteps
from celery.worker.consumer import Consumer

from shared.adapters.redis.store import Store
from shared.core.task_names import start_queue
from shared.metrics import Metrics
from shared.requeue import requeue_gone_workers
from shared.settings import Settings
from workers.incarnation import PROCESS_STARTED
from workers.task_base import process_resources

log = logging.getLogger("agentq.throttle")
UNSTARTED_LOOKED_FOR = 24 * 3600.0  # seconds: a run written but never started is started up to a day later
HOST_FORGET_SECONDS = 24 * 3600  # a worker silent this long is forgotten


def sample() -> dict[str, float]:
    return {
        "cpu": psutil.cpu_percent(interval=None),
        "memory": psutil.virtual_memory().percent,
        "disk": psutil.disk_usage("/").percent,
    }


class ResourceGuard(bootsteps.StartStopStep):  # type: ignore[misc]  # Celery is untyped
    """Consumer bootstep: a thread that samples resources and pauses/resumes this worker's queues."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Consumer, **kwargs: object) -> None:
        super().__init__(parent, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._host: Host | None = None  # kept across restarts: whether its queues are paused

    def start(self, c: Consumer) -> None:
        # Celery stops and starts a consumer's steps again after a lost broker connection: the
        # thread goes on meanwhile (its heartbeats go to Redis, not to the broker)
        host = self._host = self._host or self._watch(c)
        if c.restart_count > 0:  # connected again: the heartbeat says so (shared/requeue.py), and the
            # process's tasks know it before they take a message (workers/workflow_exec.py _unless_held)
            host.reconnected = process_resources(c.app).reconnected = time.time()
        if self._thread is None or not self._thread.is_alive():
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(host, self._stop), name="agentq-resources", daemon=True
            )
            self._thread.start()

    def stop(self, c: Consumer) -> None:
        """A lost broker connection (or the first half of a shutdown): the worker is alive all the
        same, and says so; a producer that heard nothing would take it for gone and say so."""

    def shutdown(self, c: Consumer) -> None:
        self._stop.set()

    @staticmethod
    def _run(host: Host, stop: threading.Event) -> None:
        settings = host.settings
        # the first reading at once: it is also this worker's heartbeat (producer/recovery.py)
        while True:
            try:
                host.check()
            except Exception:  # never let monitoring take the worker down
                log.exception("resource check failed")
            if stop.wait(settings.resource_interval_seconds):
                break

    @staticmethod
    def _watch(c: Consumer) -> Host:
        from workers.celery_app import settings  # read and checked once, as the app was made (it imports this module)

        app = c.app
        # the result backend is Redis whichever broker carries the messages
        cluster = Store.from_settings(settings, app.conf.result_backend)
        queues = [q.name for q in app.amqp.queues.consume_from.values()] or [app.conf.task_default_queue]
        psutil.cpu_percent(interval=None)  # prime the CPU counter
        return Host(app, c, c.hostname, cluster, queues, settings)


@dataclass
class Host:
    """One worker's host as its resource thread watches it."""

    app: Celery
    consumer: Consumer
    nodename: str
    cluster: Store
    queues: list[str]
    settings: Settings
    throttled: bool = False
    started: float = PROCESS_STARTED  # in the heartbeat: what the name held from before, a dead process held
    last_death: float = 0.0  # when this worker last requeued a gone worker's messages
    reconnected: float = 0.0  # when its consumer last connected again to a broker it had lost

    def check(self) -> None:
        """One reading: throttle or resume on a threshold crossed, then the heartbeat."""
        now = sample()
        settings = self.settings
        mem_limit, cpu_limit = self.cluster.thresholds(
            self.nodename, settings.throttle_memory_percent, settings.throttle_cpu_percent
        )
        over = now["memory"] > mem_limit or now["cpu"] > cpu_limit
        if over != self.throttled:
            self.throttled = over
            self._switch(now, mem_limit, cpu_limit)
            metrics = Metrics()
            metrics.inc("agentq_throttle_events_total", [self.nodename, "paused" if over else "resumed"])
            self.cluster.flush(metrics)
        self.cluster.forget_gone_hosts(time.time() - HOST_FORGET_SECONDS)
        self.cluster.report_reading(self.nodename, self._heartbeat(now))
        self._requeue_gone_workers()
        self._start_unstarted_runs()

    def _requeue_gone_workers(self) -> None:
        """The messages of workers gone or restarted, put back on their queues by one worker of the
        cluster at a time, so that a run nobody waits for (`--no-wait`) goes on too. At twice
        WORKER_DEAD_SECONDS: a producer waiting for its run does it first, and says so."""
        dead_after = 2 * self.settings.worker_dead_seconds
        if not self.cluster.take_turn("requeue", dead_after / 4):
            return
        from workers.celery_app import dispatcher  # the process's one (it imports this module)

        self.last_death = requeue_gone_workers(
            self.cluster,
            dispatcher,
            dead_after,
            lambda line: log.warning("%s", line),
            self.last_death,
            started_before=dead_after,
        )

    def _start_unstarted_runs(self) -> None:
        """The start of a run nobody started, published again by one worker of the cluster at a
        time: its producer lost Redis or the broker between writing the run and publishing its
        start (a partition, a lost host), or the start message was lost while nobody waits for the
        run (`--no-wait`). Only past twice WORKER_DEAD_SECONDS (a waiting producer sends a lost start
        again first, after DISPATCH_GRACE_SECONDS), and once per run in ten times that: a start that
        waits in a long queue gains a copy at most that often (the start is claimed once)."""
        dead_after = 2 * self.settings.worker_dead_seconds
        if not self.cluster.take_turn("start-unstarted", dead_after / 4):
            return
        from workers.celery_app import dispatcher  # the process's one (it imports this module)

        now = time.time()
        unstarted = self.cluster.unstarted_runs(now - UNSTARTED_LOOKED_FOR, now - dead_after)
        for meta in unstarted:
            if self.cluster.take_turn(f"start:{meta.run_id}", 10 * dead_after):
                log.warning("run %s was written but never started: its start is published again", meta.run_id)
                dispatcher.start_run(meta.run_id, start_queue(meta.kind))

    def _heartbeat(self, now: dict[str, float]) -> dict[str, object]:
        return {
            **now,
            "host": socket.gethostname(),
            "queues": self.queues,  # a run waiting on a queue nobody takes says so (producer/recovery.py)
            "throttled": self.throttled,
            "ts": time.time(),
            "started": self.started,
            "reconnected": self.reconnected,
            "pid": os.getpid(),  # the process a running task's state names (a redelivered copy waits for it)
        }

    def _switch(self, now: dict[str, float], mem_limit: float, cpu_limit: float) -> None:
        readings = f"memory {now['memory']:.0f}% (limit {mem_limit:g}%), cpu {now['cpu']:.0f}% (limit {cpu_limit:g}%)"
        # Handed to the worker's own event loop (call_soon is thread-safe and wakes it), as Celery's
        # control commands do, not broadcast to itself: the first reading comes as the worker
        # starts, and a broadcast sent before its control consumer listens is lost (a worker over
        # its threshold at start went on taking tasks from the first of its queues).
        c = self.consumer
        for queue in self.queues:
            if self.throttled:
                c.call_soon(c.cancel_task_queue, queue)
            else:
                c.call_soon(c.add_task_queue, queue)
        if self.throttled:
            log.warning("throttling %s: %s; not taking new tasks until below", self.nodename, readings)
        else:
            log.warning("resuming %s: %s; taking tasks again", self.nodename, readings)
        with self.app.events.default_dispatcher(hostname=self.nodename) as dispatcher:
            dispatcher.send("worker-throttled" if self.throttled else "worker-resumed", **now)
