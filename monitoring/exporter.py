"""The Prometheus exporter: `python -m monitoring.exporter [--port 9808]` serves /metrics and /health.

One scrape covers the cluster:
- Celery events (task sent/received/started/succeeded/failed/..., runtime and queue-wait
  histograms, worker up and active tasks) under the names celery-exporter users know;
- queue lengths that count Redis priority lists (or, on RabbitMQ, what the broker counts);
- the product's own metrics (cache, sync outcomes, runs, Studio and model latency, tokens,
  retries, throttling) and host resources, which workers aggregate in Redis;
- an AutoGen Studio availability probe.

Redis and the broker are read through the ports (shared/ports.py): the store (RunStore) and the
Dispatcher; Celery's events through shared/adapters/celery_events.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.adapters.celery import BROKER_ERRORS, ROUTES, CeleryDispatcher, create_app, require_redis
from shared.adapters.celery_events import receive_events
from shared.adapters.redis.store import Store
from shared.core.exceptions import InvalidInput
from shared.core.records import HostReading
from shared.core.run_model import TERMINAL
from shared.metrics import COUNTER_HELP, HISTOGRAM_HELP
from shared.ports import Dispatcher, RunStore
from shared.settings import Settings, load_settings

log = logging.getLogger("agentq.exporter")
WORKER_TIMEOUT = 10.0  # seconds without a heartbeat before a worker counts as gone
HOST_STALE = 60.0
# the counters' label values known beforehand, exported at 0 until they count
ZEROS: dict[str, list[tuple[str, ...]]] = {"agentq_workflow_tasks_total": [(str(s),) for s in TERMINAL]}
SCRAPE_OUTAGE_SECONDS = 1.5  # how long a scrape waits for Redis before it says so: the scrape answers within 2 s
RUNTIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


Event = dict[str, Any]  # a Celery event as its receiver hands it over (JSON: type, uuid, hostname, timestamp ...)
ENDS = ("succeeded", "failed", "revoked", "rejected")  # a task's last event: what was kept of it goes


@dataclass
class SeenTask:
    """What a task's events said so far: its name and queue (only its first events say them) and
    when it was sent."""

    name: str = "unknown"
    queue: str | None = None
    routing_key: str | None = None
    sent: float | None = None

    @property
    def queue_name(self) -> str:
        # a worker's "received" can come before the producer's "sent": the task's route says it then
        return self.queue or self.routing_key or ROUTES.get(self.name, {}).get("queue") or "unknown"


def cumulative(buckets: Sequence[float], slots: Sequence[float]) -> list[tuple[str, float]]:
    """Per-bucket counts (shared/metrics.py) as Prometheus's cumulative (bound, count) pairs."""
    pairs, running = [], 0.0
    for bound, count in zip([*map(str, buckets), "+Inf"], slots[:-1], strict=False):
        running += count
        pairs.append((bound, running))
    return pairs


class CeleryEvents:
    """Celery task and worker events -> metrics (received on a thread of its own)."""

    TASK_EVENTS = ("sent", "received", "started", "succeeded", "failed", "rejected", "revoked", "retried")

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["name", "hostname", "queue_name"]
        self.counters = {
            e: Counter(
                f"celery_task_{e}", f"Tasks {e}", labels + (["exception"] if e == "failed" else []), registry=registry
            )
            for e in self.TASK_EVENTS
        }
        self.runtime = Histogram(
            "celery_task_runtime", "Task runtime in seconds", labels, buckets=RUNTIME_BUCKETS, registry=registry
        )
        self.queue_wait = Histogram(
            "celery_task_queue_wait_time",
            "Seconds from publish to start",
            labels,
            buckets=RUNTIME_BUCKETS,
            registry=registry,
        )
        self.worker_up = Gauge(
            "celery_worker_up", "1 while the worker sends heartbeats", ["hostname"], registry=registry
        )
        self.active = Gauge("celery_worker_tasks_active", "Tasks a worker is running", ["hostname"], registry=registry)
        self.workers = Gauge("celery_active_worker_count", "Workers sending heartbeats", registry=registry)
        self.tasks: OrderedDict[str, SeenTask] = OrderedDict()  # uuid -> what its events said (bounded)
        self.last_seen: dict[str, float] = {}
        self.lock = threading.Lock()

    def _task(self, event: Event) -> SeenTask:
        info = self.tasks.setdefault(event["uuid"], SeenTask())
        self.tasks.move_to_end(event["uuid"])
        while len(self.tasks) > 50_000:
            self.tasks.popitem(last=False)
        info.name = event.get("name") or info.name
        info.queue = event.get("queue") or info.queue
        info.routing_key = event.get("routing_key") or info.routing_key
        return info

    def on_event(self, event: Event) -> None:
        kind = event.get("type", "")
        with self.lock:
            if kind.startswith("task-"):
                self._on_task(kind[5:], event)
            elif kind.startswith("worker-"):
                self._on_worker(kind[7:], event)

    def _on_task(self, kind: str, event: Event) -> None:
        if kind not in self.TASK_EVENTS:
            return
        info = self._task(event)
        host = event.get("hostname", "unknown")
        if kind == "sent" and host not in self.last_seen:  # a producer command: one series for them all
            host = "producer"
        labels = [info.name, host, info.queue_name]
        if kind == "failed":
            exception = str(event.get("exception", "")).split("(", 1)[0][:60] or "unknown"
            self.counters[kind].labels(*labels, exception).inc()
        else:
            self.counters[kind].labels(*labels).inc()
        self._timing(kind, info, labels, event)
        if kind in ENDS:
            self.tasks.pop(event["uuid"], None)

    def _timing(self, kind: str, info: SeenTask, labels: list[str], event: Event) -> None:
        """When it was sent (received: if its sending was not seen), how long it waited, how long it ran."""
        ts = float(event.get("timestamp", time.time()))
        if kind == "sent" or (kind == "received" and info.sent is None):
            info.sent = ts
        elif kind == "started" and info.sent is not None:
            self.queue_wait.labels(*labels).observe(max(0.0, ts - info.sent))
        elif kind == "succeeded" and event.get("runtime") is not None:
            self.runtime.labels(*labels).observe(float(event["runtime"]))

    def _on_worker(self, kind: str, event: Event) -> None:
        host = event.get("hostname", "unknown")
        if kind == "offline":  # stopped on purpose (scaled down, restarted): no worker lost, no alert
            self.last_seen.pop(host, None)
            for gauge in (self.worker_up, self.active):
                with contextlib.suppress(KeyError):
                    gauge.remove(host)
        elif kind in ("online", "heartbeat"):
            self.last_seen[host] = time.time()
            self.worker_up.labels(host).set(1)
            self.active.labels(host).set(int(event.get("active", 0) or 0))
        self._expire_workers()

    def _expire_workers(self) -> None:
        now = time.time()
        for host, seen in list(self.last_seen.items()):
            if now - seen > WORKER_TIMEOUT:
                del self.last_seen[host]
                self.worker_up.labels(host).set(0)
                self.active.labels(host).set(0)
        self.workers.set(len(self.last_seen))

    def tick(self) -> None:
        """Between events (at least once a second): workers silent too long are gone."""
        with self.lock:
            self._expire_workers()


class ClusterState(Collector):
    """Read at scrape time: queue lengths, the product's metrics and host resources."""

    def __init__(
        self,
        store: RunStore,
        queues: list[str],
        lengths: Callable[[list[str]], dict[str, int]],
        errors: tuple[type[Exception], ...] = (),
    ) -> None:
        """`lengths`: queue -> messages waiting, as the broker counts them; `errors`: what reading
        Redis or the broker raises when they are out of reach (the store's own too)."""
        self.store = store
        self.queues = queues
        self.lengths = lengths
        self.errors = (*store.errors, *errors)

    def collect(self) -> Iterator[Metric]:
        """Everything read from Redis first: out of reach, none of it, and agentq_redis_up 0 (the
        store rides out only SCRAPE_OUTAGE_SECONDS: a scrape answers within Prometheus' timeout)."""
        up = GaugeMetricFamily("agentq_redis_up", "1 when the exporter reads Redis (run state, metrics, queues)")
        try:
            queues = self.lengths(self.queues)
            counters, histograms = self.store.counters(), self.store.histograms()
            readings = self.store.host_readings()
        except self.errors as exc:
            log.warning("Redis out of reach: %s", exc)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        lengths = GaugeMetricFamily("celery_queue_length", "Messages waiting, all priorities", labels=["queue_name"])
        for queue, length in queues.items():
            lengths.add_metric([queue], length)
        yield lengths
        yield from self._counters(counters)
        yield from self._histograms(histograms)
        yield from self._hosts(readings)

    def _counters(self, counters: dict[tuple[str, tuple[str, ...]], float]) -> Iterator[Metric]:
        for name, (help_text, labels) in COUNTER_HELP.items():
            family = CounterMetricFamily(name.removesuffix("_total"), help_text, labels=list(labels))
            # a series first seen at 1 is no increase to rate(): the first failure would go unseen
            seen = {values: 0.0 for values in ZEROS.get(name, ())}
            for (n, values), value in counters.items():
                if n == name and len(values) == len(labels):
                    seen[values] = value
            for values, value in seen.items():
                family.add_metric(list(values), value)
            yield family

    def _histograms(self, histograms: dict[tuple[str, tuple[str, ...]], list[float]]) -> Iterator[Metric]:
        for name, (help_text, labels, buckets) in HISTOGRAM_HELP.items():
            histogram = HistogramMetricFamily(name, help_text, labels=list(labels))
            for (n, values), slots in histograms.items():
                if n == name and len(values) == len(labels):
                    histogram.add_metric(list(values), cumulative(buckets, slots), slots[-1])
            yield histogram

    def _hosts(self, readings: dict[str, HostReading]) -> Iterator[Metric]:
        cpu = GaugeMetricFamily("agentq_host_cpu_percent", "Host CPU use reported by its workers", labels=["host"])
        mem = GaugeMetricFamily(
            "agentq_host_memory_percent", "Host memory use reported by its workers", labels=["host"]
        )
        disk = GaugeMetricFamily(
            "agentq_host_disk_percent", "Host disk use (/) reported by its workers", labels=["host"]
        )
        throttled = GaugeMetricFamily(
            "agentq_worker_throttled", "1 while a worker is not taking tasks", labels=["worker"]
        )
        hosts: dict[str, HostReading] = {}
        now = time.time()
        for worker, data in readings.items():
            if now - data.get("ts", 0) > HOST_STALE:
                continue
            hosts[data["host"]] = data
            throttled.add_metric([str(worker)], 1.0 if data.get("throttled") else 0.0)
        for host, data in hosts.items():
            cpu.add_metric([host], data["cpu"])
            mem.add_metric([host], data["memory"])
            disk.add_metric([host], data["disk"])
        yield from (cpu, mem, disk, throttled)


class StudioProbe:
    def __init__(self, url: str, registry: CollectorRegistry, interval: float) -> None:
        self.url = url.rstrip("/") + "/api/health"
        self.interval = interval
        self.up = Gauge("agentq_studio_up", "1 when AutoGen Studio answers its health check", registry=registry)
        self.latency = Gauge(
            "agentq_studio_probe_seconds", "Latency of the last Studio health check", registry=registry
        )

    def run_forever(self, stop: threading.Event) -> None:
        with httpx.Client(timeout=max(1.0, self.interval)) as client:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    ok = client.get(self.url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.latency.set(time.perf_counter() - started)
                self.up.set(1 if ok else 0)
                stop.wait(self.interval)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class Exporter:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        app = create_app(settings)
        # a scrape must answer within Prometheus' timeout (10 s): an outage is said, not ridden out
        outage = min(settings.redis_outage_seconds, SCRAPE_OUTAGE_SECONDS)
        # the result backend is Redis whichever broker carries the messages
        self.store: RunStore = Store.from_settings(
            settings.model_copy(update={"redis_outage_seconds": outage}), app.conf.result_backend
        )
        # queue lengths from the broker: RabbitMQ's own counts, or the lists of the Redis that
        # carries the messages (REDIS_URL's, or BROKER_URL's when that is another Redis)
        self.dispatcher: Dispatcher = CeleryDispatcher(app, outage)
        self.events = CeleryEvents(self.registry)
        self.receive = receive_events(app, self.events.on_event, self.events.tick)
        queues = [q.strip() for q in settings.exporter_queues.split(",") if q.strip()]
        self.registry.register(ClusterState(self.store, queues, self.dispatcher.queue_lengths, BROKER_ERRORS))
        self.probe = StudioProbe(settings.studio_url, self.registry, settings.studio_probe_interval_seconds)
        self.stop = threading.Event()

    def wsgi(self) -> WSGIApplication:
        metrics: WSGIApplication = make_wsgi_app(self.registry)

        def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == "/health":
                try:
                    self.store.ping()  # at once: a health check is not an outage to ride out
                    body, status = {"status": "ok"}, "200 OK"
                except self.store.errors as exc:
                    body, status = {"status": "redis unreachable", "error": str(exc)}, "503 Service Unavailable"
                start_response(status, [("Content-Type", "application/json")])
                return [json.dumps(body).encode()]
            return metrics(environ, start_response)

        return app

    def serve(self, host: str, port: int) -> None:
        server = make_server(host, port, self.wsgi(), _ThreadingWSGIServer, handler_class=_QuietHandler)
        for target in (self.receive, self.probe.run_forever):
            threading.Thread(target=target, args=(self.stop,), daemon=True).start()
        log.warning("agentq exporter on http://%s:%d/metrics", host, port)
        try:
            server.serve_forever()
        finally:
            self.stop.set()


def main() -> None:
    try:
        settings = load_settings()
        require_redis(settings)
    except InvalidInput as exc:
        raise SystemExit(f"error: {exc}") from None
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=settings.exporter_port)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    try:
        Exporter(settings).serve(args.host, args.port)
    except (OSError, OverflowError) as exc:  # the port taken (another command's exporter), or none: one line
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise SystemExit(f"error: cannot listen on {args.host}:{args.port}: {why}") from None


if __name__ == "__main__":
    main()
