"""`producer monitor`: the exporter's picture, live in the terminal, with the seed alert thresholds.

Reads the exporter's /metrics (and recent runs from Redis); Prometheus is not needed.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from monitoring.thresholds import thresholds

SPARK = "▁▂▃▄▅▆▇█"


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return out


def total(metrics: dict[str, list[tuple[dict[str, str], float]]], name: str, **match: str) -> float:
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
        try:
            metrics = parse_metrics(httpx.get(self.url, timeout=5).text)
            reachable = True
        except httpx.HTTPError:
            metrics, reachable = {}, False
        snap = self._snapshot(now, metrics)
        if not reachable:
            snap.alerts.insert(
                0, {"name": "ExporterUnreachable", "severity": "critical", "summary": f"no answer from {self.url}"}
            )
        self.snapshots.append(snap)
        return snap

    def _snapshot(self, now: float, m: dict[str, Any]) -> Snapshot:
        workers = {}
        for labels, up in m.get("celery_worker_up", []):
            host = labels["hostname"]
            workers[host] = {
                "up": up == 1,
                "active": total(m, "celery_worker_tasks_active", hostname=host),
                "throttled": False,
            }
        for labels, value in m.get("agentq_worker_throttled", []):
            workers.setdefault(labels["worker"], {"up": True, "active": 0.0})["throttled"] = value == 1
        queues = {labels["queue_name"]: v for labels, v in m.get("celery_queue_length", [])}
        hosts: dict[str, dict[str, float]] = {}
        for kind in ("cpu", "memory", "disk"):
            for labels, v in m.get(f"agentq_host_{kind}_percent", []):
                hosts.setdefault(labels["host"], {})[kind] = v
        buckets: dict[float, float] = {}
        for labels, v in m.get("agentq_studio_request_duration_seconds_bucket", []):
            buckets[float(labels["le"])] = buckets.get(float(labels["le"]), 0.0) + v
        # a workflow task that fails inside a message that succeeds counts as a failure too
        workflow_failed = total(m, "agentq_workflow_tasks_total", status="failed")
        done = total(m, "celery_task_succeeded_total") + total(m, "agentq_workflow_tasks_total") - workflow_failed
        failed = total(m, "celery_task_failed_total") + workflow_failed
        rate = ratio = p95 = None
        if self.previous:
            then, prev = self.previous
            elapsed = max(now - then, 1e-6)
            rate = max(0.0, done - prev["done"]) / elapsed
            finished = (done - prev["done"]) + (failed - prev["failed"])
            ratio = (failed - prev["failed"]) / finished if finished > 0 else None
            window = {b: c - prev["buckets"].get(b, 0.0) for b, c in buckets.items()}
            p95 = quantile_from_buckets(window, 0.95)
        self.previous = (now, {"done": done, "failed": failed, "buckets": buckets})
        if rate is not None:
            self.throughput.append(rate)
        for q, length in queues.items():
            self.queue_history.setdefault(q, deque(maxlen=10)).append(length)
        studio_up = m.get("agentq_studio_up")
        studio = {
            "up": None if not studio_up else studio_up[0][1] == 1,
            "probe_seconds": total(m, "agentq_studio_probe_seconds") if m.get("agentq_studio_probe_seconds") else None,
            "p95_seconds": p95,
        }
        snap = Snapshot(now, workers, queues, hosts, studio, rate, ratio)
        snap.alerts = self.alerts(snap)
        return snap

    def alerts(self, s: Snapshot) -> list[dict[str, str]]:
        t, out = self.thresholds, []

        def add(name: str, severity: str, summary: str) -> None:
            out.append({"name": name, "severity": severity, "summary": summary})

        for host, r in s.hosts.items():
            if r.get("cpu", 0) > t["cpu"]:
                add("HostCpuHigh", "warning", f"CPU on {host} is {r['cpu']:.0f}% (> {t['cpu']:.0f}%)")
            if r.get("memory", 0) > t["memory"]:
                add("HostMemoryHigh", "warning", f"memory on {host} is {r['memory']:.0f}% (> {t['memory']:.0f}%)")
            if r.get("disk", 0) > t["disk"]:
                add("HostDiskFull", "critical", f"disk on {host} is {r['disk']:.0f}% (> {t['disk']:.0f}%)")
        if s.studio["up"] is False:
            add("StudioDown", "critical", "AutoGen Studio does not answer its health check")
        p95 = s.studio["p95_seconds"]
        if p95 is not None and p95 > t["studio_p95_critical"]:
            add("StudioLatencyCritical", "critical", f"Studio p95 {p95:.2f} s (> {t['studio_p95_critical']:g} s)")
        elif p95 is not None and p95 > t["studio_p95_warning"]:
            add("StudioLatencyHigh", "warning", f"Studio p95 {p95:.2f} s (> {t['studio_p95_warning']:g} s)")
        for host, w in s.workers.items():
            if not w["up"]:
                add("WorkerGone", "critical", f"worker {host} stopped sending heartbeats")
            if w.get("throttled"):
                add("WorkerThrottled", "warning", f"worker {host} is not taking tasks (host resources)")
        for q, history in self.queue_history.items():
            if history[-1] > t["queue_backlog"] and len(history) > 1 and history[-1] > history[0]:
                add("QueueBacklogGrowing", "warning", f"queue {q} holds {history[-1]:.0f} messages and is growing")
        if s.failure_ratio is not None and s.failure_ratio > t["failure_ratio"]:
            add("TaskFailureRateHigh", "warning", f"{s.failure_ratio:.0%} of tasks fail")
        return out

    def render(self, s: Snapshot, runs: list[dict[str, Any]]) -> Group:
        hosts = Table(title="hosts", expand=True)
        for col in ("host", "cpu %", "memory %", "disk %"):
            hosts.add_column(col)
        for host, r in sorted(s.hosts.items()):
            hosts.add_row(escape(host), *(f"{r.get(k, 0):.0f}" for k in ("cpu", "memory", "disk")))
        workers = Table(title=f"workers ({sum(w['up'] for w in s.workers.values())} up)", expand=True)
        for col in ("worker", "state", "active"):
            workers.add_column(col)
        for name, w in sorted(s.workers.items()):
            state = "throttled" if w.get("throttled") else "up" if w["up"] else "GONE"
            workers.add_row(escape(name), state, f"{w['active']:.0f}")
        queues = Table(title="queues", expand=True)
        queues.add_column("queue")
        queues.add_column("length")
        for q, length in sorted(s.queues.items()):
            queues.add_row(escape(q), f"{length:.0f}")
        studio = s.studio
        studio_line = (
            "Studio: "
            + ("up" if studio["up"] else "DOWN" if studio["up"] is False else "unknown")
            + (f", probe {studio['probe_seconds'] * 1000:.0f} ms" if studio["probe_seconds"] is not None else "")
            + (f", p95 {studio['p95_seconds']:.3f} s" if studio["p95_seconds"] is not None else "")
        )
        peak = max(self.throughput, default=0.0) or 1.0
        spark = "".join(SPARK[min(7, int(v / peak * 7))] for v in self.throughput)
        rate = "-" if s.tasks_per_second is None else f"{s.tasks_per_second:.1f}/s"
        trend = f"tasks succeeded: {rate}  {spark}"
        alerts = Table(title=f"alerts ({len(s.alerts)})", expand=True)
        for col in ("alert", "severity", "summary"):
            alerts.add_column(col)
        for a in s.alerts:
            style = "red" if a["severity"] == "critical" else "yellow"
            alerts.add_row(f"[{style}]{escape(a['name'])}[/{style}]", escape(a["severity"]), escape(a["summary"]))
        recent = Table(title="recent runs", expand=True)
        for col in ("run", "kind", "state", "seconds"):
            recent.add_column(col)
        for run in runs[:5]:
            seconds = f"{run['finished'] - run['created']:.1f}" if run.get("finished") else "-"
            recent.add_row(*map(escape, (str(run["run_id"]), run.get("kind", "sync"), run.get("state", "?"), seconds)))
        return Group(Panel(f"{studio_line}\n{trend}", title="agentq monitor"), hosts, workers, queues, alerts, recent)

    def save(self, path: str) -> None:
        data = {"snapshots": [s.__dict__ for s in self.snapshots], "thresholds": self.thresholds}
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
