"""`producer monitor`: the exporter's picture, live in the terminal, with the seed alert thresholds.

Reads the exporter's /metrics (and recent runs from Redis); Prometheus is not needed.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group
from rich.panel import Panel
from rich.table import Table

from monitoring.thresholds import thresholds
from producer.terminal_text import escape
from shared.core.task_names import TaskName

Metrics = dict[str, list[tuple[dict[str, str], float]]]  # metric name -> (labels, value) of each sample
SPARK = "▁▂▃▄▅▆▇█"


def parse_metrics(text: str) -> Metrics:
    out: Metrics = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return out


def total(metrics: Metrics, name: str, **match: str) -> float:
    return sum(v for labels, v in metrics.get(name, []) if all(labels.get(k) == m for k, m in match.items()))


def quantile_from_buckets(buckets: dict[float, float], q: float) -> float | None:
    """Prometheus-style histogram_quantile over cumulative bucket counts."""
    items = sorted(buckets.items())
    if not items or items[-1][1] <= 0:
        return None
    rank, lower, lower_count = q * items[-1][1], 0.0, 0.0
    for bound, count in items:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * ((rank - lower_count) / max(count - lower_count, 1e-12))
        lower, lower_count = bound, count
    return None


@dataclass
class Snapshot:
    at: float
    workers: dict[str, dict[str, Any]]
    queues: dict[str, float]
    hosts: dict[str, dict[str, float]]
    studio: dict[str, Any]
    tasks_per_second: float | None
    failure_ratio: float | None
    alerts: list[dict[str, str]] = field(default_factory=list)
    redis_up: bool | None = None  # as the exporter reads it (None: not said)
    worker_count: float | None = None  # workers sending heartbeats, as the exporter hears them


class Monitor:
    def __init__(self, exporter_url: str) -> None:
        self.url = exporter_url.rstrip("/") + "/metrics"
        self.previous: tuple[float, dict[str, Any]] | None = None
        self.throughput: deque[float] = deque(maxlen=30)
        self.queue_history: dict[str, deque[float]] = {}
        self.snapshots: list[Snapshot] = []
        self.thresholds = thresholds()  # monitoring/alerts.yml, where Prometheus reads them too

    def poll(self) -> Snapshot:
        now = time.time()
        metrics: Metrics = {}
        problem = None
        try:
            response = httpx.get(self.url, timeout=5)
            response.raise_for_status()
            metrics = parse_metrics(response.text)
        except httpx.HTTPStatusError as exc:
            problem = f"{self.url} answered {exc.response.status_code}"
        except httpx.HTTPError:
            problem = f"no answer from {self.url}"
        except ValueError:  # prometheus_client's parser says so of anything not in its format
            problem = f"{self.url} does not answer in Prometheus' text format (does EXPORTER_URL name another server?)"
        snap = self._snapshot(now, metrics)
        if problem is not None:  # nothing was read: no rate either (not 0), and none against this poll
            snap.tasks_per_second = snap.failure_ratio = None
            self.previous = None
            snap.alerts.insert(0, {"name": "ExporterUnreachable", "severity": "critical", "summary": problem})
        self.snapshots.append(snap)
        return snap

    def _snapshot(self, now: float, m: Metrics) -> Snapshot:
        queues = {labels["queue_name"]: v for labels, v in m.get("celery_queue_length", [])}
        buckets = _latency_buckets(m)
        # a workflow task that fails inside a message that succeeds counts as a failure too
        workflow_failed = total(m, "agentq_workflow_tasks_total", status="failed")
        # the run_tasks messages carry workflow tasks, which count one by one
        succeeded = m.get("celery_task_succeeded_total", [])
        messages = sum(v for labels, v in succeeded if labels.get("name") != TaskName.RUN_TASKS)
        done = messages + total(m, "agentq_workflow_tasks_total") - workflow_failed
        failed = total(m, "celery_task_failed_total") + workflow_failed
        rate, ratio, p95 = self._rates(now, done, failed, buckets)
        self.previous = (now, {"done": done, "failed": failed, "buckets": buckets})
        if rate is not None:
            self.throughput.append(rate)
        for q, length in queues.items():
            self.queue_history.setdefault(q, deque(maxlen=10)).append(length)
        snap = Snapshot(now, _workers(m), queues, _hosts(m), _studio(m, p95), rate, ratio)
        if "agentq_redis_up" in m:
            snap.redis_up = total(m, "agentq_redis_up") == 1
        if "celery_active_worker_count" in m:
            snap.worker_count = total(m, "celery_active_worker_count")
        snap.alerts = self.alerts(snap)
        return snap

    def _rates(
        self, now: float, done: float, failed: float, buckets: dict[float, float]
    ) -> tuple[float | None, float | None, float | None]:
        """Tasks succeeded a second, the share that failed and Studio's p95 since the last poll
        (None each at the first)."""
        if not self.previous:
            return None, None, None
        then, prev = self.previous
        elapsed = max(now - then, 1e-6)
        rate = max(0.0, done - prev["done"]) / elapsed
        finished = (done - prev["done"]) + (failed - prev["failed"])
        ratio = (failed - prev["failed"]) / finished if finished > 0 else None
        window = {b: c - prev["buckets"].get(b, 0.0) for b, c in buckets.items()}
        return rate, ratio, quantile_from_buckets(window, 0.95)

    def alerts(self, s: Snapshot) -> list[dict[str, str]]:
        t = self.thresholds
        found = [
            *_host_alerts(s.hosts, t),
            *_studio_alerts(s.studio, t),
            *_worker_alerts(s.workers),
            *_queue_alerts(self.queue_history, t),
        ]
        if s.failure_ratio is not None and s.failure_ratio > t["failure_ratio"]:
            found.append(("TaskFailureRateHigh", "warning", f"{s.failure_ratio:.0%} of tasks fail"))
        if s.redis_up is False:
            found.insert(0, ("RedisDown", "critical", "the exporter cannot read Redis (runs, metrics, queues unseen)"))
        if s.worker_count == 0:
            found.append(("NoWorkers", "critical", "no worker sends heartbeats: nothing is synced or run"))
        return [{"name": name, "severity": severity, "summary": summary} for name, severity, summary in found]

    def render(self, s: Snapshot, runs: list[dict[str, Any]]) -> Group:
        workers_up = sum(w["up"] for w in s.workers.values())
        return Group(
            Panel(f"{_studio_line(s.studio)}\n{self._trend(s.tasks_per_second)}", title="agentq monitor"),
            _table("hosts", ("host", "cpu %", "memory %", "disk %"), _host_rows(s.hosts)),
            _table(f"workers ({workers_up} up)", ("worker", "state", "active"), _worker_rows(s.workers)),
            _table("queues", ("queue", "length"), [(escape(q), f"{n:.0f}") for q, n in sorted(s.queues.items())]),
            _table(f"alerts ({len(s.alerts)})", ("alert", "severity", "summary"), _alert_rows(s.alerts)),
            _table("recent runs", ("run", "kind", "state", "seconds"), _run_rows(runs[:5])),
        )

    def _trend(self, tasks_per_second: float | None) -> str:
        peak = max(self.throughput, default=0.0) or 1.0
        spark = "".join(SPARK[min(7, int(v / peak * 7))] for v in self.throughput)
        rate = "-" if tasks_per_second is None else f"{tasks_per_second:.1f}/s"
        return f"tasks succeeded: {rate}  {spark}"

    def save(self, path: str) -> None:
        data = {"snapshots": [s.__dict__ for s in self.snapshots], "thresholds": self.thresholds}
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)


Alert = tuple[str, str, str]  # name, severity, summary
Row = tuple[str, ...]
# a host's resources looked at: (metric, alert, severity, what the summary calls it)
_HOST_LIMITS = (
    ("cpu", "HostCpuHigh", "warning", "CPU"),
    ("memory", "HostMemoryHigh", "warning", "memory"),
    ("disk", "HostDiskFull", "critical", "disk"),
)


def _workers(m: Metrics) -> dict[str, dict[str, Any]]:
    workers: dict[str, dict[str, Any]] = {}
    for labels, up in m.get("celery_worker_up", []):
        host = labels["hostname"]
        workers[host] = {
            "up": up == 1,
            "active": total(m, "celery_worker_tasks_active", hostname=host),
            "throttled": False,
        }
    for labels, value in m.get("agentq_worker_throttled", []):
        # known only by its heartbeat in Redis (kept HOST_STALE): the exporter has not heard from it
        # since it started, which a live worker's events would have made it by now
        workers.setdefault(labels["worker"], {"up": False, "active": 0.0})["throttled"] = value == 1
    return workers


def _hosts(m: Metrics) -> dict[str, dict[str, float]]:
    hosts: dict[str, dict[str, float]] = {}
    for kind in ("cpu", "memory", "disk"):
        for labels, v in m.get(f"agentq_host_{kind}_percent", []):
            hosts.setdefault(labels["host"], {})[kind] = v
    return hosts


def _latency_buckets(m: Metrics) -> dict[float, float]:
    """Studio's request durations, a cumulative count per bucket summed over every worker."""
    buckets: dict[float, float] = {}
    for labels, v in m.get("agentq_studio_request_duration_seconds_bucket", []):
        try:
            bound = float(labels["le"])
        except (KeyError, ValueError):  # not a bucket as prometheus_client writes one
            continue
        buckets[bound] = buckets.get(bound, 0.0) + v
    return buckets


def _studio(m: Metrics, p95: float | None) -> dict[str, Any]:
    studio_up = m.get("agentq_studio_up")
    return {
        "up": None if not studio_up else studio_up[0][1] == 1,
        "probe_seconds": total(m, "agentq_studio_probe_seconds") if m.get("agentq_studio_probe_seconds") else None,
        "p95_seconds": p95,
    }


def _host_alerts(hosts: dict[str, dict[str, float]], t: dict[str, float]) -> list[Alert]:
    return [
        (name, severity, f"{word} on {host} is {r[kind]:.0f}% (> {t[kind]:.0f}%)")
        for host, r in hosts.items()
        for kind, name, severity, word in _HOST_LIMITS
        if r.get(kind, 0) > t[kind]
    ]


def _studio_alerts(studio: dict[str, Any], t: dict[str, float]) -> list[Alert]:
    out: list[Alert] = []
    if studio["up"] is False:
        out.append(("StudioDown", "critical", "AutoGen Studio does not answer its health check"))
    p95 = studio["p95_seconds"]
    if p95 is None:
        return out
    if p95 > t["studio_p95_critical"]:
        out.append(("StudioLatencyCritical", "critical", f"Studio p95 {p95:.2f} s (> {t['studio_p95_critical']:g} s)"))
    elif p95 > t["studio_p95_warning"]:
        out.append(("StudioLatencyHigh", "warning", f"Studio p95 {p95:.2f} s (> {t['studio_p95_warning']:g} s)"))
    return out


def _worker_alerts(workers: dict[str, dict[str, Any]]) -> list[Alert]:
    out: list[Alert] = []
    for host, w in workers.items():
        if not w["up"]:
            out.append(("WorkerGone", "critical", f"worker {host} stopped sending heartbeats"))
        if w.get("throttled"):
            out.append(("WorkerThrottled", "warning", f"worker {host} is not taking tasks (host resources)"))
    return out


def _queue_alerts(queue_history: dict[str, deque[float]], t: dict[str, float]) -> list[Alert]:
    return [
        ("QueueBacklogGrowing", "warning", f"queue {q} holds {history[-1]:.0f} messages and is growing")
        for q, history in queue_history.items()
        if _growing(history, t["queue_backlog"])
    ]


def _growing(history: deque[float], backlog: float) -> bool:
    return history[-1] > backlog and len(history) > 1 and history[-1] > history[0]


def _table(title: str, columns: tuple[str, ...], rows: Iterable[Row]) -> Table:
    table = Table(title=title, expand=True)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    return table


def _host_rows(hosts: dict[str, dict[str, float]]) -> list[Row]:
    return [
        (escape(host), *(f"{r.get(k, 0):.0f}" for k in ("cpu", "memory", "disk"))) for host, r in sorted(hosts.items())
    ]


def _worker_rows(workers: dict[str, dict[str, Any]]) -> list[Row]:
    return [(escape(name), _worker_state(w), f"{w['active']:.0f}") for name, w in sorted(workers.items())]


def _worker_state(w: dict[str, Any]) -> str:
    if w.get("throttled"):
        return "throttled"
    return "up" if w["up"] else "GONE"


def _alert_rows(alerts: list[dict[str, str]]) -> list[Row]:
    return [(_styled(a["name"], a["severity"]), escape(a["severity"]), escape(a["summary"])) for a in alerts]


def _styled(name: str, severity: str) -> str:
    style = "red" if severity == "critical" else "yellow"
    return f"[{style}]{escape(name)}[/{style}]"


def _run_rows(runs: list[dict[str, Any]]) -> list[Row]:
    return [tuple(map(escape, _run_cells(run))) for run in runs]


def _run_cells(run: dict[str, Any]) -> Row:
    seconds = f"{run['finished'] - run['created']:.1f}" if run.get("finished") else "-"
    return (str(run["run_id"]), run.get("kind", "sync"), run.get("state", "?"), seconds)


def _studio_line(studio: dict[str, Any]) -> str:
    state = {True: "up", False: "DOWN"}.get(studio["up"], "unknown")
    probe = studio["probe_seconds"]
    p95 = studio["p95_seconds"]
    return (
        f"Studio: {state}"
        + (f", probe {probe * 1000:.0f} ms" if probe is not None else "")
        + (f", p95 {p95:.3f} s" if p95 is not None else "")
    )
